"""What a set of stories looks like to a reader: judge perplexity, variety, repetition,
length, endings and requested names.

Words are lower-cased runs of letters (with inner apostrophes). Word variety is distinct-n:
per story, distinct n-word sequences over all n-word sequences, averaged over stories (a long
story repeats more by nature, so stories are compared one by one, not pooled). A story is
*repetitive* when some 4-word sequence occurs 3 times or more in it. A story *ends finished*
when its last sentence closes (``.``, ``!`` or ``?``, maybe followed by a closing quote) and,
for a generated story, the model ended it rather than the length limit.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .. import labels as lab
from .scoring import Judge

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_CLOSED = re.compile(r"[.!?][\"'”’)]*\s*$")

#: A story is repetitive when a run of ``REPEAT_RUN`` words occurs ``REPEAT_TIMES`` or more.
REPEAT_RUN, REPEAT_TIMES = 4, 3


@dataclass
class JudgedStory:
    """A story to judge, with what was asked of it when it was generated."""

    text: str
    names: tuple[str, ...] = ()  # requested characters (generated stories only)
    stopped: bool = True  # False when generation hit the length limit


@dataclass
class QualityRow:
    """The measures of one set of stories (one sampling setting, or a story file)."""

    label: str
    stories: int
    judge_tokens: int | None  # the judge's figures are None when no judge was run
    judge_nats_per_token: float | None
    judge_perplexity: float | None
    distinct_2: float
    distinct_3: float
    repetitive: float  # share of stories with a 4-word run 3+ times
    words: float  # mean words per story
    finished: float  # share of stories that end finished
    names: float | None  # share of stories with requested names that use them all


def words(text: str) -> list[str]:
    """The story's words, lower-cased."""
    return _WORD.findall(text.lower())


def distinct(tokens: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of ``tokens`` (None when shorter than ``n``)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def is_repetitive(tokens: Sequence[str], run: int = REPEAT_RUN,
                  times: int = REPEAT_TIMES) -> bool:
    """Whether some ``run`` consecutive words occur ``times`` or more."""
    counts = Counter(tuple(tokens[i : i + run]) for i in range(len(tokens) - run + 1))
    return bool(counts) and max(counts.values()) >= times


def ends_finished(story: JudgedStory) -> bool:
    """Whether the story stopped by itself on a closed sentence."""
    return story.stopped and _CLOSED.search(story.text) is not None


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def quality_row(label: str, stories: Sequence[JudgedStory],
                judge: Judge | None) -> QualityRow:
    """All measures of ``stories``; perplexity is pooled over every token the judge read.

    Without a judge only the text measures are computed.
    """
    tokens = per_token = perplexity = None
    if judge is not None:
        scores = judge.nats([s.text for s in stories])
        tokens = sum(t for _, t in scores)
        per_token = sum(n for n, _ in scores) / tokens if tokens else math.nan
        perplexity = math.exp(per_token) if tokens else math.nan
    split = [words(s.text) for s in stories]
    named = [s for s in stories if s.names]
    return QualityRow(
        label=label,
        stories=len(stories),
        judge_tokens=tokens,
        judge_nats_per_token=per_token,
        judge_perplexity=perplexity,
        distinct_2=_mean([distinct(w, 2) for w in split]),
        distinct_3=_mean([distinct(w, 3) for w in split]),
        repetitive=_mean([float(is_repetitive(w)) for w in split]),
        words=_mean([float(len(w)) for w in split]),
        finished=_mean([float(ends_finished(s)) for s in stories]),
        names=(_mean([float(all(lab.mentions(s.text, "characters", n) for n in s.names))
                      for s in named]) if named else None),
    )


def quality_table(rows: Sequence[QualityRow]) -> list[str]:
    """The rows as an aligned text table."""
    lines = [f"{'':<34}{'stories':>8}{'judge ppl':>10}{'dist-2':>8}{'dist-3':>8}"
             f"{'repet.':>8}{'words':>7}{'ended':>7}{'names':>7}"]
    for r in rows:
        names = "" if r.names is None else f"{r.names:.0%}"
        perplexity = "" if r.judge_perplexity is None else f"{r.judge_perplexity:.2f}"
        lines.append(f"{r.label[:33]:<34}{r.stories:>8}{perplexity:>10}"
                     f"{r.distinct_2:>8.3f}{r.distinct_3:>8.3f}{r.repetitive:>8.0%}"
                     f"{r.words:>7.0f}{r.finished:>7.0%}{names:>7}")
    return lines
