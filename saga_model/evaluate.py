"""Measuring a model: validation loss / bits per byte on any text, and conditioning adherence.

Adherence is measured with the same keyword rules that labelled the training data
(:mod:`saga_model.labels`), so it shows whether the control prefix steers the story the way
training intended — not an independent judgement of what a story is "about".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from . import labels as lab
from .data import StreamedEvalChunks, stream_stories, unconditioned_example
from .errors import SagaError
from .generate import Decoder, SamplingOptions, StoryRequest, stream_story, tell_story
from .judge.metrics import JudgedStory
from .model import StoryModel
from .tokenizer import GROUP_CHARS, StoryTokenizer
from .train import loss_figures, loss_terms

#: Character sets requested in the adherence report: common and rare names, one to three each.
CHARACTER_SETS: tuple[tuple[str, ...], ...] = (
    ("Alice", "Bob"), ("Zara", "Milo"), ("Aiko", "Kofi"), ("Priya",), ("Mateo", "Ines", "Sven"),
)
#: The same with accents and other Latin letters, which the tokenizer spells in pieces.
ACCENTED_CHARACTER_SETS: tuple[tuple[str, ...], ...] = (
    ("Zoë", "Élodie"), ("Søren",), ("Anaïs", "José"), ("Siobhán", "Łucja"),
)
#: Tokens scored at a time by :func:`text_loss`: their logits over a vocabulary of 8,000 take
#: 65 MB, and a few times that while scoring (16 windows of 512 tokens took 540 MB).
BATCH_TOKENS = 2048


@dataclass
class TextScore:
    """Loss of a model on a text file's stories."""

    stories: int
    tokens: int
    loss: float
    bits_per_byte: float


def text_loss(model: StoryModel, tokenizer: StoryTokenizer, path: str | Path,
              batch_size: int | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> TextScore:
    """Mean next-token loss (nats) and bits per byte on the stories of ``path``.

    Stories are read and cleaned like training data and scored without a control prefix —
    exactly how ``grain-train`` measures validation loss, with the same windows.  The file is
    streamed: stories are read, tokenized (long ones in pieces) and scored as they come, so
    memory holds a few hundred thousand characters (or the longest story) and a batch, however
    large the file.  ``batch_size`` windows are scored at a time (default: those of
    :data:`BATCH_TOKENS` tokens), which changes the figures only by rounding.
    ``progress(label, done, total)`` follows the bytes of the file scored.
    """
    context = model.config.context_length
    windows = StreamedEvalChunks(context, batch_size or max(1, BATCH_TOKENS // context))
    label = f"scoring {Path(path).name}"
    total, count = mx.array(0.0), mx.array(0.0)
    n_stories = n_bytes = 0
    reported = -1  # the bytes scored, as last told to progress

    def score(batches: list[np.ndarray], read: int, size: int) -> None:
        """Score ``batches``, telling progress of bytes up to ``read`` (of ``size``) on the way."""
        nonlocal total, count, reported
        start = max(0, reported)
        for i, batch in enumerate(batches, 1):
            nats, n = loss_terms(model, mx.array(batch), tokenizer.story_id)
            total, count = total + nats, count + n
            mx.eval(total, count)
            if progress is not None:
                reported = start + (read - start) * i // len(batches)
                progress(label, reported, size)

    group: list[str] = []
    chars = read = size = 0
    for story, read, size in stream_stories(path):
        n_stories += 1
        n_bytes += len(story.encode())
        group.append(unconditioned_example(story))
        chars += len(group[-1])
        if chars >= GROUP_CHARS:
            score(windows.add(tokenizer.encode_flat(group, np.int32)[0]), read, size)
            group, chars = [], 0
    if not n_stories:
        raise SagaError(f"no stories found in {path}")
    score(windows.add(tokenizer.encode_flat(group, np.int32)[0]), size, size)
    score(windows.finish(), size, size)
    if progress is not None and reported != size:
        progress(label, size, size)
    loss, bpb = loss_figures(total.item(), count.item(), windows.n_tokens, n_stories, n_bytes)
    return TextScore(n_stories, windows.n_tokens, loss, bpb)


@dataclass
class Adherence:
    """How often one requested setting shows up, with and without asking for it."""

    field: str
    value: str
    stories: int
    conditioned: float  # share of stories generated with the setting that show it
    unconditioned: float  # share of stories generated without any setting that show it
    label_match: float | None = None  # share whose derived label equals the value

    @property
    def lift(self) -> float:
        """How much more often the setting appears when requested."""
        return self.conditioned - self.unconditioned


def _shows(story: str, field: str, value: str | tuple[str, ...]) -> bool:
    if field == "characters":
        return all(lab.mentions(story, "characters", name) for name in value)
    return lab.mentions(story, field, str(value))


def conditioning_report(model: StoryModel | Decoder, tokenizer: StoryTokenizer,
                        stories_per_setting: int = 20, options: SamplingOptions | None = None,
                        progress: Callable[[str, int, int], None] | None = None
                        ) -> list[Adherence]:
    """Adherence of generated stories to every theme, tone, genre and some character sets.

    For each setting, ``stories_per_setting`` stories are generated with only that field set;
    the same number of unconditioned stories (shared by all settings) gives the baseline.
    Story ``i`` of every setting uses seed ``base_seed + i``.
    """
    options = options or SamplingOptions(max_tokens=300)
    base_seed = options.seed or 0
    settings: list[tuple[str, str | tuple[str, ...]]] = [
        *(("theme", v) for v in lab.THEMES), *(("tone", v) for v in lab.TONES),
        *(("genre", v) for v in lab.GENRES),
        *(("characters", c) for c in CHARACTER_SETS + ACCENTED_CHARACTER_SETS)]
    total = (len(settings) + 1) * stories_per_setting
    done = 0

    def tell(request: StoryRequest, i: int) -> str:
        nonlocal done
        story = tell_story(model, tokenizer, request,
                           SamplingOptions(**{**asdict(options), "seed": base_seed + i}))
        done += 1
        if progress:
            progress("generating", done, total)
        return story

    baseline = [tell(StoryRequest(), i) for i in range(stories_per_setting)]
    rows = []
    for field, value in settings:
        request = (StoryRequest(characters=value) if field == "characters"
                   else StoryRequest(**{field: value}))
        stories = [tell(request, i) for i in range(stories_per_setting)]
        share = _share(stories, field, value)
        label_match = None
        if field != "characters":
            derived = [getattr(lab.derive_labels(s), field) for s in stories]
            label_match = sum(d == value for d in derived) / len(stories)
        rows.append(Adherence(field, value if isinstance(value, str) else ",".join(value),
                              len(stories), share, _share(baseline, field, value), label_match))
    return rows


def _share(stories: Sequence[str], field: str, value: str | tuple[str, ...]) -> float:
    return sum(_shows(s, field, value) for s in stories) / len(stories)


def judge_requests(count: int) -> list[StoryRequest]:
    """The requests of the judged sample: every other story asks for a character set (in
    turn from :data:`CHARACTER_SETS`), the others for a theme (in turn from the themes)."""
    return [StoryRequest(characters=CHARACTER_SETS[(i // 2) % len(CHARACTER_SETS)]) if i % 2 == 0
            else StoryRequest(theme=lab.THEMES[(i // 2) % len(lab.THEMES)])
            for i in range(count)]


def generate_for_judge(model: StoryModel | Decoder, tokenizer: StoryTokenizer, count: int,
                       options: SamplingOptions,
                       progress: Callable[[str, int, int], None] | None = None
                       ) -> list[JudgedStory]:
    """``count`` stories for :func:`saga_model.judge.metrics.quality_row`, from
    :func:`judge_requests`; story ``i`` uses seed ``options.seed + i`` (0 when unset)."""
    stories = []
    for i, request in enumerate(judge_requests(count)):
        seeded = SamplingOptions(**{**asdict(options), "seed": (options.seed or 0) + i})
        pieces = list(stream_story(model, tokenizer, request, seeded))
        stories.append(JudgedStory("".join(p.text for p in pieces), request.characters,
                                   pieces[-1].finish_reason == "end"))
        if progress:
            progress("generating", i + 1, count)
    return stories
