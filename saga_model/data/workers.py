"""Workers that turn chunks of raw stories into examples, in this process or in a pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from ..errors import SagaError
from ..labels import derive_labels
from ..text import clean_story
from ..tokenizer import StoryTokenizer
from .corpus import Job, story_hash, story_key
from .examples import conditioned_example, example_rng, unconditioned_example

#: Corpora smaller than this are prepared in this process; larger ones use one worker process
#: per core (``GRAIN_DATA_WORKERS`` overrides).
PARALLEL_MIN_BYTES = 16_000_000

@dataclass(frozen=True)
class Recipe:
    """How stories become examples: everything a worker needs besides the stories."""

    seed: int
    field_dropout: float
    name_swap: float
    augment_copies: int
    valid_cut: int  # stories whose 32-bit hash is below this are for validation (0: none)
    valid_key: bytes | None = None  # when set, only this story is for validation
    tokenizer_json: str | None = None  # None: return texts (the tokenizer sample), not tokens




@dataclass
class Part:
    """Examples of one destination (validation, or one copy of the training split)."""

    tokens: np.ndarray  # uint16, all examples one after the other
    lengths: np.ndarray  # int64, tokens of each example
    owners: np.ndarray  # int64, index (into the batch's stories) of each example's story


@dataclass
class Batch:
    """What a worker made of a job: one entry per non-empty story."""

    keys: list[bytes] = field(default_factory=list)
    raw_index: list[int] = field(default_factory=list)  # position of the story in the job
    in_valid: list[bool] = field(default_factory=list)
    n_bytes: list[int] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)  # [validation, copy 0, copy 1, ...]
    texts: list[str] = field(default_factory=list)  # texts mode: copy-0 training texts
    text_owners: list[int] = field(default_factory=list)


class _Worker:
    """Cleans, labels, conditions and (with a tokenizer) encodes chunks of stories."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.tokenizer = (StoryTokenizer(Tokenizer.from_str(recipe.tokenizer_json))
                          if recipe.tokenizer_json is not None else None)

    def run(self, job: Job) -> Batch:
        """The examples of one chunk (as texts without a tokenizer), with each story's key,
        split and size."""
        r = self.recipe
        batch = Batch()
        destinations: list[list[tuple[int, str]]] = [[] for _ in range(1 + r.augment_copies)]
        for index, raw in enumerate(job.stories):
            story = clean_story(raw)
            if not story:
                continue
            key = story_key(story)
            if job.from_valid_file:
                in_valid = True
            elif r.valid_key is not None:
                in_valid = key == r.valid_key
            else:
                in_valid = story_hash(story) < r.valid_cut
            owner = len(batch.keys)
            batch.keys.append(key)
            batch.raw_index.append(index)
            batch.in_valid.append(in_valid)
            batch.n_bytes.append(len(story.encode()))
            if in_valid:
                if self.tokenizer is not None:
                    destinations[0].append((owner, unconditioned_example(story)))
                continue
            labels = derive_labels(story)
            for copy in range(r.augment_copies if self.tokenizer is not None else 1):
                text = conditioned_example(story, labels, example_rng(r.seed, copy, key),
                                           r.field_dropout, r.name_swap)
                if self.tokenizer is None:
                    batch.texts.append(text)
                    batch.text_owners.append(owner)
                else:
                    destinations[1 + copy].append((owner, text))
        if self.tokenizer is not None:
            batch.parts = [self._encode(examples) for examples in destinations]
        return batch

    def _encode(self, examples: list[tuple[int, str]]) -> Part:
        """Token ids of the examples (long ones in pieces: see
        :func:`~saga_model.tokenizer.text_pieces`)."""
        assert self.tokenizer is not None
        tokens, lengths = self.tokenizer.encode_flat((text for _, text in examples), np.uint16)
        owners = np.fromiter((owner for owner, _ in examples), dtype=np.int64,
                             count=len(examples))
        return Part(tokens, lengths, owners)


_WORKER: _Worker | None = None


def _init_worker(recipe: Recipe) -> None:
    """Set up a worker process (its one :class:`_Worker`).

    Ctrl-C is left to the main process (``grain-train`` turns it into a stop request), and a
    worker whose main process is gone exits instead of waiting for work forever.
    """
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()
    _WORKER = _Worker(recipe)


def _run_job(job: Job) -> Batch:
    """Task run in a worker process."""
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def worker_count(total_bytes: int, workers: int | None) -> int:
    """Worker processes to use: ``workers``, else ``GRAIN_DATA_WORKERS``, else one per core
    for corpora of :data:`PARALLEL_MIN_BYTES` or more (1 means: work in this process)."""
    if workers is None and os.environ.get("GRAIN_DATA_WORKERS"):
        try:
            workers = int(os.environ["GRAIN_DATA_WORKERS"])
        except ValueError:
            raise SagaError("GRAIN_DATA_WORKERS must be a whole number") from None
    if workers is None:
        if total_bytes < PARALLEL_MIN_BYTES:
            return 1
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
        return max(1, cores or 1)
    return max(1, workers)


def run_jobs(jobs: Iterable[Job], recipe: Recipe, workers: int) -> Iterator[tuple[Job, Batch]]:
    """Each job with its batch, in order; with several workers at most two jobs per worker are
    in flight, so memory stays bounded however large the corpus."""
    if workers <= 1:
        worker = _Worker(recipe)
        for job in jobs:
            yield job, worker.run(job)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(recipe,))
    pending: deque[tuple[Job, Future[Batch]]] = deque()
    try:
        for job in jobs:
            pending.append((job, pool.submit(_run_job, job)))
            if len(pending) >= 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    except BrokenProcessPool:
        raise SagaError("a data preparation worker process stopped (out of memory? or a "
                        "script calling prepare_data without `if __name__ == '__main__':`); "
                        "GRAIN_DATA_WORKERS=1 prepares in this process") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
