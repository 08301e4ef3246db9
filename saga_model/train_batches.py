"""The training batch of each step, gathered on a CUDA GPU from tokens kept there.

On MLX's CUDA backend an array made from host data lives in CUDA managed memory: a batch
made with numpy each step (:func:`saga_model.data.sample_batch`, 0.5 MB at batch 256) moves
to the GPU by page faults, and the training loop ran 5-7% slower on an H100 than on batches
already on the device (``benchmarks/train_throughput.py``, variants ``host batches`` and
``device``). There, :class:`TrainingBatches` keeps the training split's tokens on the GPU
once and uploads only each step's window starts; the windows are gathered on the device.
The starts come from the same random draw (:func:`saga_model.data.batch_starts`), so the
batches are exactly those of :func:`~saga_model.data.sample_batch`. On CPUs and Metal
(unified memory), and for splits too large to keep, batches are made on the host as before.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .cuda import on_cuda_gpu
from .data import TokenSplit, batch_starts, sample_batch, window_starts
from .distributed import World

#: The largest resident copy of a split (int32 tokens, in bytes; 268M tokens) kept in device
#: memory; larger splits are batched on the host.
MAX_RESIDENT_BYTES = 1 << 30


class TrainingBatches:
    """This rank's share of the training batch of each step, as an int32 ``mx.array`` of
    ``(batch_size / world.size, context + 1)`` tokens: the rows :func:`sample_batch` draws for
    ``seed`` and the step, sharded by :meth:`World.shard`.

    With ``on_device`` (by default on a CUDA GPU, where it pays, if the split's int32
    tokens fit in :data:`MAX_RESIDENT_BYTES`, about 1 GiB of device memory) the split is
    uploaded once, widened to int32 on the device (so the resident copy sits in device
    memory, not in the managed memory of arrays made from host data, and windows need no
    cast), and each step uploads only this rank's ``batch_size / world.size`` window starts
    and gathers the windows from it. Otherwise each step's batch is made on the host with
    :func:`sample_batch` and uploaded whole.
    """

    def __init__(self, split: TokenSplit, context: int, batch_size: int, seed: int,
                 world: World | None = None, *, on_device: bool | None = None) -> None:
        self.split, self.context, self.batch_size, self.seed = split, context, batch_size, seed
        self.world = world or World()
        self.starts = window_starts(split, context)
        if on_device is None:
            on_device = on_cuda_gpu() and split.n_tokens * 4 <= MAX_RESIDENT_BYTES
        self.tokens: mx.array | None = None
        if on_device:
            self.tokens = mx.array(np.asarray(split.tokens)).astype(mx.int32)
            self._offsets = mx.arange(context + 1, dtype=mx.int32)
            mx.eval(self.tokens, self._offsets)

    @property
    def on_device(self) -> bool:
        """Whether the windows are gathered on the device (else made on the host)."""
        return self.tokens is not None

    def __call__(self, step: int) -> mx.array:
        """The batch of ``step`` (lazy: the gather runs with whatever is evaluated next)."""
        if self.tokens is None:
            return mx.array(self.world.shard(sample_batch(
                self.split, self.starts, self.batch_size, self.context, self.seed, step)))
        chosen = self.world.shard(batch_starts(self.starts, self.batch_size, self.seed, step))
        return self.tokens[mx.array(chosen.astype(np.int32))[:, None] + self._offsets]
