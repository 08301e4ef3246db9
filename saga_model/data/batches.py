"""Training batches and validation windows over a token split."""

from __future__ import annotations

import itertools
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


def batch_starts(starts: np.ndarray, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Where the ``batch_size`` windows of ``step`` begin (drawn from ``starts``, the offsets
    of :func:`window_starts`): same seed and step, same offsets."""
    rng = np.random.default_rng([seed, step])
    return starts[rng.integers(0, starts.size, size=batch_size)]


def sample_batch(split: TokenSplit, starts: np.ndarray, batch_size: int, context: int,
                 seed: int, step: int) -> np.ndarray:
    """The ``(batch_size, context + 1)`` tokens of ``step``: same seed and step, same batch."""
    chosen = batch_starts(starts, batch_size, seed, step)
    return np.asarray(split.tokens[chosen[:, None] + np.arange(context + 1)], dtype=np.int32)


def eval_batch_count(split: TokenSplit, context: int, batch_size: int,
                     max_batches: int = 0) -> int:
    """How many batches :func:`eval_chunks` yields (for a progress display)."""
    n_windows = (split.n_tokens - 1) // max(1, min(context, split.n_tokens - 1))
    batches = -(-n_windows // batch_size)
    return min(batches, max_batches) if max_batches else batches


def eval_chunks(split: TokenSplit, context: int, batch_size: int,
                max_batches: int = 0) -> Iterator[np.ndarray]:
    """Consecutive, non-overlapping windows covering the split, batched (each row is L+1 long):
    the split's tokens read a batch's worth at a time through :class:`StreamedEvalChunks`."""
    windows = StreamedEvalChunks(context, batch_size)
    step = batch_size * context

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, split.n_tokens, step):
            yield from windows.add(np.asarray(split.tokens[start : start + step]))
        yield from windows.finish()

    return itertools.islice(batches(), max_batches or None)


class StreamedEvalChunks:
    """Validation windows over a token stream that arrives in pieces: consecutive windows of
    ``context + 1`` tokens (each starting at the last token of the one before; one shorter
    window if the whole stream is shorter), ``batch_size`` to a batch, each batch given as
    soon as its tokens have arrived, whatever the pieces.  Only the tokens not yet batched are
    kept."""

    def __init__(self, context: int, batch_size: int) -> None:
        self.context = context
        self.batch_size = batch_size
        self.n_tokens = 0  # tokens added so far
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._batched = False

    def add(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Take the next tokens of the stream; returns the batches they complete."""
        self._pending.append(tokens)
        self._pending_size += tokens.size
        self.n_tokens += tokens.size
        stride = self.batch_size * self.context
        if self._pending_size < stride + 1:
            return []
        stream = np.concatenate(self._pending)
        full = (stream.size - 1) // stride
        rest = stream[full * stride:]  # a window's last token is the next one's first
        self._pending, self._pending_size = [rest], rest.size
        self._batched = True
        return [_windows(stream[i * stride : (i + 1) * stride + 1], self.context)
                for i in range(full)]

    def finish(self) -> list[np.ndarray]:
        """The last batches, once the whole stream was added (the tokens after the last whole
        window are left out)."""
        stream = np.concatenate([np.empty(0, dtype=np.int32), *self._pending])
        self._pending, self._pending_size = [], 0
        length = self.context if self._batched else min(self.context, stream.size - 1)
        if length < 1:
            return []
        n_windows = (stream.size - 1) // length
        stride = self.batch_size * length
        return [_windows(stream[i : min(i + stride, n_windows * length) + 1], length)
                for i in range(0, n_windows * length, stride)]


def _windows(stretch: np.ndarray, length: int) -> np.ndarray:
    """Consecutive windows of ``length + 1`` tokens over ``stretch`` (of ``k * length + 1``
    tokens), each starting at the last token of the one before, as int32 rows."""
    n_windows = (stretch.size - 1) // length
    return np.asarray(stretch[np.arange(n_windows)[:, None] * length + np.arange(length + 1)],
                      dtype=np.int32)
