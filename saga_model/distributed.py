"""Data parallelism over ``mx.distributed``: ranks, collectives, agreement and stopping together.

A run started by MLX's launcher (``mlx.launch -n 2 -- grain-train ...``) has one process per
rank. Every rank builds the same model from the same seed, draws the same global batch each
step and trains on its own slice of it; gradients are averaged with ``mx.distributed.all_sum``.
Without a launcher the world is a single process and nothing here communicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import mlx.core as mx
import numpy as np

from .errors import SagaError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``group`` is None for a single process)."""

    rank: int = 0
    size: int = 1
    group: mx.distributed.Group | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the only rank that prints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether there is more than one rank."""
        return self.size > 1

    def sum(self, x: mx.array) -> mx.array:
        """``x`` summed over all ranks (``x`` itself for a single process)."""
        return mx.distributed.all_sum(x, group=self.group) if self.is_distributed else x

    def max(self, x: mx.array) -> mx.array:
        """Element-wise maximum of ``x`` over all ranks."""
        return mx.distributed.all_max(x, group=self.group) if self.is_distributed else x

    def min(self, x: mx.array) -> mx.array:
        """Element-wise minimum of ``x`` over all ranks."""
        return mx.distributed.all_min(x, group=self.group) if self.is_distributed else x

    def barrier(self) -> None:
        """Return only once every rank has called it."""
        if self.is_distributed:
            mx.eval(self.sum(mx.array(0, dtype=mx.int32)))

    def check_batch_size(self, batch_size: int) -> None:
        """The global batch must split into equal per-rank slices."""
        if batch_size % self.size:
            raise SagaError(f"--batch_size {batch_size} (the global batch) must be a multiple "
                            f"of the number of processes ({self.size})")

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of the rows of a global batch."""
        if not self.is_distributed:
            return batch
        rows = batch.shape[0] // self.size
        return batch[self.rank * rows : (self.rank + 1) * rows]

    def agree(self, text: str) -> bool:
        """Whether every rank passed the same ``text`` (compared through a SHA-256 digest)."""
        if not self.is_distributed:
            return True
        digest = mx.array(np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
                          .astype(np.int32))
        low, high = self.min(digest), self.max(digest)
        return bool(mx.array_equal(low, high).item())

    @contextlib.contextmanager
    def one_at_a_time(self) -> Iterator[None]:
        """Run the block on one rank after the other, rank 0 first (e.g. to fill a shared cache).

        Every rank takes part in ``size`` barriers: rank ``r`` waits for ``r`` of them before
        its turn and for the rest after it.
        """
        for _ in range(self.rank):
            self.barrier()
        yield
        for _ in range(self.size - self.rank):
            self.barrier()


#: Set for every rank by ``mlx.launch`` (MLX_RANK) or by Open MPI's ``mpirun``.
LAUNCHER_VARIABLES = ("MLX_RANK", "OMPI_COMM_WORLD_SIZE")


def current_world() -> World:
    """The world this process was launched into (a single process without a launcher).

    A process that no launcher started does not initialise ``mx.distributed`` at all, so that
    plain runs never start a backend (Open MPI, if installed, would otherwise initialise).
    """
    if not any(name in os.environ for name in LAUNCHER_VARIABLES):
        return World()
    group = mx.distributed.init()
    if group.size() == 1:
        return World()
    return World(group.rank(), group.size(), group)


class StopVote:
    """Lets all ranks agree on when to stop, without waiting for each step to finish.

    Each call casts this rank's wishes (stop requested, time limit reached) into an all-reduce
    that runs alongside the step; a distributed run acts on the result of the call ``LAG``
    calls earlier, which every rank reads at the same step, so all of them leave the loop
    together and no collective is left waiting. A single process decides at once.
    """

    LAG = 2

    def __init__(self, world: World) -> None:
        self.world = world
        self._votes: deque[mx.array] = deque()

    def __call__(self, stop: bool, time_up: bool) -> str | None:
        """``"stopped"``, ``"time limit"`` or None (keep going)."""
        if self.world.is_distributed:
            vote = self.world.max(mx.array([stop, time_up], dtype=mx.int32))
            mx.async_eval(vote)
            self._votes.append(vote)
            if len(self._votes) <= self.LAG:
                return None
            stop, time_up = (bool(v) for v in self._votes.popleft().tolist())
        if stop:
            return "stopped"
        return "time limit" if time_up else None

    def settle(self) -> None:
        """Wait for the votes still in flight, so that no rank leaves a collective unfinished."""
        mx.eval(*self._votes)
        self._votes.clear()


def exit_when_stuck(grace_seconds: float, rank: int) -> None:
    """Make SIGINT/SIGTERM end this rank even while it is blocked in a collective operation.

    Python runs signal handlers only between bytecodes, so a rank waiting in an all-reduce for
    a peer that died (NCCL waits forever) never sees the clean-stop handler. The interpreter's
    C-level handler still writes every signal number to a wake-up pipe; a watcher thread reads
    it and ends the process with ``os._exit`` at a second signal, or ``grace_seconds`` after
    the first if the process is still alive. Checkpoints are written atomically, so at worst
    the newest one is missing. Call from the main thread after installing the Python handlers.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    wanted = {int(signal.SIGINT), int(signal.SIGTERM)}

    def watch() -> None:
        first: tuple[int, float] | None = None  # (signal, when)
        while True:
            timeout = (None if first is None
                       else max(0.0, first[1] + grace_seconds - time.monotonic()))
            ready, _, _ = select.select([read_fd], [], [], timeout)
            if not ready and first is not None:
                _hard_exit(rank, f"no clean stop within {grace_seconds:g} s of the signal",
                           128 + first[0])
            for signum in os.read(read_fd, 64) if ready else b"":
                if signum not in wanted:
                    continue
                if first is not None:
                    _hard_exit(rank, "second signal", 128 + signum)
                first = (signum, time.monotonic())

    threading.Thread(target=watch, name="grain-stop-watch", daemon=True).start()


def _hard_exit(rank: int, why: str, code: int) -> NoReturn:
    print(f"grain-train (rank {rank}): {why}; exiting without a final checkpoint",
          file=sys.stderr, flush=True)
    os._exit(code)
