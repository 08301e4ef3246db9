"""Labels of a story (theme, tone, genre, characters) and whether a story mentions a value."""

from __future__ import annotations

import re

from ..prefix import FIELD_VALUES, StoryLabels, field_values
from .characters import find_characters
from .choices import validate_choice
from .lexicons import CALIBRATION, MENTION_THRESHOLD, MIN_RAW_SCORE, MIN_SCORE
from .matching import keyword_scores


def label_scores(story: str, field: str) -> dict[str, float]:
    """Calibrated score of every value of ``field`` ("theme", "tone" or "genre") for ``story``.

    The score is the weighted keyword count per 100 words (at least 50 words are assumed, so
    very short texts are not over-rewarded), times the value's :data:`CALIBRATION` factor.
    Values are returned in the field's canonical order.
    """
    field_values(field)
    raw, n_words = keyword_scores(story, (field,))
    return _calibrated(field, raw[field], n_words)


def _calibrated(field: str, raw: dict[str, float], n_words: int) -> dict[str, float]:
    """Calibrated scores from raw weighted counts (see :func:`label_scores`)."""
    n_words = max(n_words, 50)
    factors = CALIBRATION[field]
    return {value: raw[value] * 100.0 / n_words * factors[value] for value in raw}


def _best_value(field: str, raw: dict[str, float], n_words: int) -> str | None:
    scores = _calibrated(field, raw, n_words)
    best: str | None = None
    for value in FIELD_VALUES[field]:  # fixed order: earlier values win ties
        if raw[value] < MIN_RAW_SCORE or scores[value] < MIN_SCORE:
            continue
        if best is None or scores[value] > scores[best]:
            best = value
    return best


def derive_labels(story: str) -> StoryLabels:
    """Derive theme, tone, genre and characters of ``story`` deterministically.

    Each of theme/tone/genre is the best-scoring value of :func:`label_scores` (ties broken by
    the order of :data:`THEMES` / :data:`TONES` / :data:`GENRES`), or ``None`` when no value
    has enough evidence (:data:`MIN_RAW_SCORE`, :data:`MIN_SCORE`).
    """
    raw, n_words = keyword_scores(story, tuple(FIELD_VALUES))
    return StoryLabels(
        theme=_best_value("theme", raw["theme"], n_words),
        tone=_best_value("tone", raw["tone"], n_words),
        genre=_best_value("genre", raw["genre"], n_words),
        characters=find_characters(story),
    )


def mentions(story: str, field: str, value: str) -> bool:
    """True when ``story`` contains keyword evidence of ``value`` for ``field``.

    Used to measure whether a generated story follows the requested setting.  ``field`` may
    also be "characters", in which case ``value`` is a name that must appear as a whole word.
    ``value`` is normalised with :func:`validate_choice` (so "Sci-Fi" works).
    """
    if field == "characters":
        name = value.strip()
        if not name:
            raise ValueError("empty character name")
        return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", story) is not None
    canonical = validate_choice(field, value)
    if canonical is None:
        raise ValueError(f"empty {field} value")
    return keyword_scores(story, (field,))[0][field][canonical] >= MENTION_THRESHOLD

