"""Training batches and validation windows over a token split."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import SagaError
from .examples import TokenSplit


def window_starts(split: TokenSplit, context: int) -> np.ndarray:
    """Offsets where training windows of ``context + 1`` tokens may begin.

    Windows begin at story starts (so the control prefix leads, as in generation); stories
    longer than the context also get starts every half context so their ends are seen too.
    """
    starts = np.asarray(split.starts, dtype=np.int64)
    lengths = np.diff(starts, append=split.n_tokens)
    half = max(1, context // 2)
    long = lengths > context
    # A story of length L > context gets starts s + half, s + 2 half, ... below s + L.
    counts = (lengths[long] - 1) // half
    first = np.repeat(starts[long] + half, counts)
    step = np.arange(first.size) - np.repeat(np.cumsum(counts) - counts, counts)
    candidates = np.concatenate([starts, first + half * step])
    usable = np.sort(candidates[candidates + context + 1 <= split.n_tokens])
    if usable.size == 0:
        raise SagaError(
            f"the training data has only {split.n_tokens} tokens: need more than the "
            f"context length ({context}); add stories or use a smaller --context_length")
    return usable


def sample_batch(split: TokenSplit, starts: np.ndarray, batch_size: int, context: int,
                 seed: int, step: int) -> np.ndarray:
    """The ``(batch_size, context + 1)`` tokens of ``step``: same seed and step, same batch."""
    rng = np.random.default_rng([seed, step])
    chosen = starts[rng.integers(0, starts.size, size=batch_size)]
    return np.asarray(split.tokens[chosen[:, None] + np.arange(context + 1)], dtype=np.int32)


def eval_batch_count(split: TokenSplit, context: int, batch_size: int,
                     max_batches: int = 0) -> int:
    """How many batches :func:`eval_chunks` yields (for a progress display)."""
    n_windows = (split.n_tokens - 1) // max(1, min(context, split.n_tokens - 1))
    batches = -(-n_windows // batch_size)
    return min(batches, max_batches) if max_batches else batches


def eval_chunks(split: TokenSplit, context: int, batch_size: int,
                max_batches: int = 0) -> Iterator[np.ndarray]:
    """Consecutive, non-overlapping windows covering the split, batched (each row is L+1 long)."""
    length = min(context, split.n_tokens - 1)
    n_windows = (split.n_tokens - 1) // length
    offsets = np.arange(n_windows) * length
    for batch, i in enumerate(range(0, n_windows, batch_size)):
        if max_batches and batch >= max_batches:
            return
        rows = offsets[i : i + batch_size]
        yield np.asarray(split.tokens[rows[:, None] + np.arange(length + 1)], dtype=np.int32)
