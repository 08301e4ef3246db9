"""Samplers and streaming story generation with a KV cache."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import mlx.core as mx
import numpy as np

from . import labels as lab
from .errors import SagaError
from .fast_decode import NumpyDecoder
from .model import StoryModel
from .stand_ins import NameStandIns
from .story_input import SamplingOptions
from .text import clean_story
from .tokenizer import StoryTokenizer


@dataclass
class StoryRequest:
    """What story to tell: any subset of theme, tone, genre, characters and an opening."""

    theme: str | None = None
    tone: str | None = None
    genre: str | None = None
    characters: tuple[str, ...] = field(default_factory=tuple)
    opening: str = ""

    @classmethod
    def create(cls, theme: str | None = None, tone: str | None = None,
               genre: str | None = None, characters: str | Sequence[str] | None = None,
               opening: str | None = None) -> StoryRequest:
        """Validate user input (case-insensitive choices, "Alice,Bob" names) into a request."""
        try:
            names = (lab.parse_characters(characters) if isinstance(characters, str)
                     else lab.parse_characters(",".join(characters or ())))
            return cls(
                theme=lab.validate_choice("theme", theme),
                tone=lab.validate_choice("tone", tone),
                genre=lab.validate_choice("genre", genre),
                characters=names,
                opening=clean_story(opening or ""),
            )
        except ValueError as exc:
            raise SagaError(str(exc)) from None

    def labels(self) -> lab.StoryLabels:
        """The conditioning fields as :class:`~saga_model.labels.StoryLabels`."""
        return lab.StoryLabels(self.theme, self.tone, self.genre, tuple(self.characters))

    def prompt(self) -> str:
        """Control prefix followed by the opening, exactly as the model saw stories in training."""
        return lab.control_prefix(self.labels()) + self.opening


@dataclass
class StoryPiece:
    """One streamed piece of a story, with running statistics."""

    text: str
    n_tokens: int
    elapsed: float
    finish_reason: str | None = None  # None while streaming, then "end" or "length"

    @property
    def tokens_per_sec(self) -> float:
        """Generated tokens per second so far."""
        return self.n_tokens / self.elapsed if self.elapsed > 0 else 0.0


class Decoder(Protocol):
    """A model runner with a KV cache: the interface generation needs."""

    context_length: int

    def prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        """Reset the cache, run ``token_ids`` and return the next-token logits (vocab,)."""

    def step(self, token_id: int) -> np.ndarray:
        """Append one token and return the next-token logits (vocab,)."""


class MLXDecoder:
    """Runs a :class:`StoryModel` one token at a time with its KV cache."""

    def __init__(self, model: StoryModel) -> None:
        self.model = model
        self.context_length = model.config.context_length
        self._cache = model.make_cache()

    def prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        self._cache = self.model.make_cache()
        logits = self.model(mx.array([list(token_ids)]), self._cache)[0, -1]
        return np.array(logits)

    def step(self, token_id: int) -> np.ndarray:
        return np.array(self.model(mx.array([[token_id]]), self._cache)[0, -1])


def make_decoder(model: StoryModel) -> Decoder:
    """The decoder to run ``model`` with: NumPy on a CPU, MLX on a GPU (Apple Silicon, CUDA).

    Both give the same logits (float32, up to rounding); on a CPU MLX's per-operation overhead
    makes its decode several times slower (see docs/performance.md). Models computing in
    another dtype than float32 always use MLX. ``GRAIN_DECODER=mlx|numpy`` forces one.
    """
    choice = os.environ.get("GRAIN_DECODER", "").strip().lower()
    if choice not in ("", "mlx", "numpy"):
        raise SagaError(f"GRAIN_DECODER must be 'mlx' or 'numpy', not {choice!r}")
    if not choice:
        on_cpu = mx.default_device().type == mx.DeviceType.cpu
        choice = "numpy" if on_cpu and model.compute_dtype == mx.float32 else "mlx"
    return NumpyDecoder(model) if choice == "numpy" else MLXDecoder(model)


def sample_token(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> int:
    """Pick the next token from (processed) logits: temperature, top-k, min-p, top-p."""
    logits = logits.astype(np.float64, copy=True)
    if options.temperature == 0:
        return int(np.argmax(logits))
    logits /= options.temperature
    if 0 < options.top_k < logits.size:
        kth = np.partition(logits, -options.top_k)[-options.top_k]
        logits[logits < kth] = -np.inf
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if options.min_p > 0:
        probs[probs < options.min_p * probs.max()] = 0.0
    if options.top_p < 1.0:
        ids, weights = _nucleus(probs, options.top_p)
    else:
        ids, weights = np.arange(probs.size), probs
    cumulative = np.cumsum(weights)
    pick = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return int(ids[min(pick, ids.size - 1)])


def _nucleus(probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of most likely tokens whose mass reaches ``top_p``: (ids, probs).

    Tokens come most likely first, ties by id; the most likely token is always kept. Only the
    head of the distribution is sorted when the nucleus ends inside it (the usual case: ~10x
    faster than sorting all 8,000 probabilities), with the same result as a full sort.
    """
    size = probs.size
    for head in (64, 512, size):
        if head < size:
            kth = np.partition(probs, size - head)[size - head]
            candidates = np.flatnonzero(probs >= kth)
        else:
            candidates = np.arange(size)
        order = candidates[np.argsort(-probs[candidates], kind="stable")]
        ranked = probs[order]
        keep = np.cumsum(ranked) - ranked < top_p
        if head >= size or not keep[-1]:
            return order[keep], ranked[keep]
    raise AssertionError("unreachable: the last pass sorts everything")


LogitsProcessor = Callable[[Sequence[int], np.ndarray], None]
"""Adjusts next-token logits in place, given the story's tokens so far (opening + generated)."""


def ban_tokens(token_ids: Sequence[int]) -> LogitsProcessor:
    """A processor that makes ``token_ids`` impossible (e.g. control tokens inside a story)."""
    banned = np.asarray(list(token_ids), dtype=np.int64)

    def process(_story: Sequence[int], logits: np.ndarray) -> None:
        logits[banned] = -np.inf

    return process


def penalize_recent(repetition: float, presence: float, window: int) -> LogitsProcessor:
    """A processor penalising the tokens among the story's last ``window`` tokens.

    Each such token's logit is divided by ``repetition`` when positive (multiplied when
    negative), then lowered by ``presence`` — once per distinct token, however often it came.
    """
    def process(story: Sequence[int], logits: np.ndarray) -> None:
        if not len(story):
            return
        ids = np.unique(np.asarray(story[-window:], dtype=np.int64))
        values = logits[ids]
        if repetition != 1.0:
            values = np.where(values > 0, values / repetition, values * repetition)
        logits[ids] = values - presence

    return process


class NoRepeatNgram:
    """A processor forbidding any token that would repeat an ``n``-token run of the story."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._followers: dict[tuple[int, ...], set[int]] = {}
        self._indexed = 0  # n-grams ending before this story position are indexed

    def __call__(self, story: Sequence[int], logits: np.ndarray) -> None:
        """Ban the tokens that followed the story's last ``n - 1`` tokens before."""
        n = self.n
        for end in range(max(self._indexed, n), len(story) + 1):
            self._followers.setdefault(tuple(story[end - n : end - 1]), set()).add(story[end - 1])
        self._indexed = max(self._indexed, len(story) + 1)
        if len(story) >= n - 1:
            banned = self._followers.get(tuple(story[len(story) - n + 1 :]))
            if banned:
                logits[list(banned)] = -np.inf


def end_not_before(eos_id: int, min_tokens: int) -> LogitsProcessor:
    """A processor that makes the end of the story impossible for its first ``min_tokens``
    new tokens."""
    start: list[int] = []  # the story's length at the first call: the opening

    def process(story: Sequence[int], logits: np.ndarray) -> None:
        if not start:
            start.append(len(story))
        if len(story) - start[0] < min_tokens:
            logits[eos_id] = -np.inf

    return process


def sampling_processors(options: SamplingOptions) -> list[LogitsProcessor]:
    """The repetition processors that ``options`` ask for, in the order they apply."""
    processors: list[LogitsProcessor] = []
    if options.repetition_penalty != 1.0 or options.presence_penalty:
        processors.append(penalize_recent(options.repetition_penalty, options.presence_penalty,
                                          options.repetition_window))
    if options.no_repeat_ngram:
        processors.append(NoRepeatNgram(options.no_repeat_ngram))
    return processors


class Utf8Guard:
    """A processor that keeps the story valid UTF-8: a token is possible only if its bytes can
    follow the bytes so far (a character begun is finished, never broken), and the story ends
    only between characters. Byte-level tokens can otherwise spell broken text, shown as U+FFFD.
    """

    def __init__(self, tokenizer: StoryTokenizer) -> None:
        self.after = np.asarray(tokenizer.utf8_transitions(), dtype=np.int8)
        self.impossible = [np.flatnonzero(row < 0) for row in self.after]
        self.state = 0
        self._checked = 0

    def __call__(self, story: Sequence[int], logits: np.ndarray) -> None:
        """Rule out the tokens that cannot come next."""
        for token in story[self._checked:]:
            self.state = max(0, int(self.after[self.state, token]))
        self._checked = len(story)
        logits[self.impossible[self.state]] = -np.inf


class NameReminder:
    """A processor nudging the sampler towards requested names the story has not used yet.

    Until a name appears, ``strength`` is added to the logit of the token that would begin it
    (" Name", or "Name" at the start of a line) — or, once the story ends with the first part of
    a name, to the token that continues it. The model still decides where a name fits.
    """

    def __init__(self, tokenizer: StoryTokenizer, names: Sequence[str], strength: float) -> None:
        self.strength = strength
        self.pending = {name: [tokenizer.encode(" " + name), tokenizer.encode(name)]
                        for name in names}
        # A name starting with a bare-space token (rare names in small vocabularies) is only
        # boosted once that space is there: boosting spaces everywhere would garble the text.
        self.never_first = {v[0] for vs in self.pending.values() for v in vs
                            if not tokenizer.decode(v[:1]).strip()}
        self._checked = 0

    def __call__(self, story: Sequence[int], logits: np.ndarray) -> None:
        """Boost the names still missing from ``story``."""
        for name, variants in list(self.pending.items()):
            if any(_ends_with_since(story, v, self._checked) for v in variants):
                del self.pending[name]
                continue
            for variant in variants:
                token = _next_name_token(story, variant)
                if not (token == variant[0] and token in self.never_first):
                    logits[token] += self.strength
        self._checked = len(story)


def _next_name_token(story: Sequence[int], name: Sequence[int]) -> int:
    """The token of ``name`` that would come next: continue a started name, else its first."""
    for done in range(len(name) - 1, 0, -1):  # longest started part first
        if list(story[len(story) - done :]) == list(name[:done]):
            return name[done]
    return name[0]


def _ends_with_since(story: Sequence[int], seq: Sequence[int], start: int) -> bool:
    """Whether ``seq`` occurs in ``story`` ending at or after index ``start``."""
    n = len(seq)
    return any(list(story[end - n : end]) == list(seq)
               for end in range(max(n, start + 1), len(story) + 1))


def generate_tokens(decoder: Decoder, prompt_ids: Sequence[int], options: SamplingOptions,
                    processors: Sequence[LogitsProcessor] = (), stop_id: int | None = None,
                    keep_prefix: int = 0) -> Iterator[int]:
    """Yield sampled token ids one by one until ``stop_id`` (yielded too) or ``max_tokens``.

    ``processors`` see the story so far (prompt after the first ``keep_prefix`` tokens, plus
    what was generated) and adjust the logits before sampling. When the context fills up, the
    cache is rebuilt from the first ``keep_prefix`` prompt tokens (the control prefix) plus the
    most recent half-context of tokens, so stories can run long.
    """
    context = decoder.context_length
    tokens = _fit(list(prompt_ids), keep_prefix, context - 1)
    story = list(prompt_ids[keep_prefix:])
    rng = np.random.default_rng(options.seed)
    logits = decoder.prefill(tokens)
    for _ in range(options.max_tokens):
        for process in processors:
            process(story, logits)
        token = sample_token(logits, options, rng)
        yield token
        if token == stop_id:
            return
        tokens.append(token)
        story.append(token)
        if len(tokens) >= context:
            tokens = _fit(tokens, keep_prefix, context // 2)
            logits = decoder.prefill(tokens)
        else:
            logits = decoder.step(token)


def _fit(tokens: list[int], keep_prefix: int, budget: int) -> list[int]:
    """At most ``budget`` tokens: the first ``keep_prefix`` ones and then the most recent."""
    if len(tokens) <= budget:
        return tokens
    prefix = tokens[: min(keep_prefix, budget - 1)]
    return prefix + tokens[len(tokens) - (budget - len(prefix)):]


def stream_story(model: StoryModel | Decoder, tokenizer: StoryTokenizer, request: StoryRequest,
                 options: SamplingOptions | None = None) -> Iterator[StoryPiece]:
    """Stream a story as text pieces as soon as each token arrives.

    The opening (if any) comes first; the last piece has ``finish_reason`` set ("end" when the
    model closed the story, "length" at ``max_tokens``).
    """
    options = options or SamplingOptions()
    decoder = make_decoder(model) if isinstance(model, StoryModel) else model
    start = time.perf_counter()
    stand_ins = NameStandIns.choose(tokenizer, request.characters, request.opening)
    names = stand_ins.for_model(request.characters)
    labels = lab.StoryLabels(request.theme, request.tone, request.genre, names)
    prefix_ids = tokenizer.encode(lab.control_prefix(labels))
    opening = stand_ins.to_model(request.opening)
    prompt_ids = prefix_ids + (tokenizer.encode(opening) if opening else [])
    if request.opening:
        yield StoryPiece(request.opening, 0, time.perf_counter() - start)
    processors = [ban_tokens([i for i in range(tokenizer.n_control) if i != tokenizer.eos_id])]
    if names and options.name_boost:
        processors.append(NameReminder(tokenizer, names, options.name_boost))
    if options.min_tokens:
        processors.append(end_not_before(tokenizer.eos_id, options.min_tokens))
    processors += [*sampling_processors(options), Utf8Guard(tokenizer)]
    stream = tokenizer.stream_decoder()
    restore = stand_ins.restorer(request.opening)
    count = 0
    for token in generate_tokens(decoder, prompt_ids, options, processors, tokenizer.eos_id,
                                 keep_prefix=len(prefix_ids)):
        count += 1
        if token == tokenizer.eos_id:
            text = restore.add(stream.flush()) + restore.flush()
            yield StoryPiece(text, count, time.perf_counter() - start, "end")
            return
        text = restore.add(stream.add(token))
        if text:
            yield StoryPiece(text, count, time.perf_counter() - start)
    text = restore.add(stream.flush()) + restore.flush()
    yield StoryPiece(text, count, time.perf_counter() - start, "length")


def tell_story(model: StoryModel | Decoder, tokenizer: StoryTokenizer, request: StoryRequest,
               options: SamplingOptions | None = None) -> str:
    """The whole story as one string (see :func:`stream_story`)."""
    return "".join(piece.text for piece in stream_story(model, tokenizer, request, options))
