"""The model's input contract: control tokens, label values and the control prefix.

Every training example and every generation request starts with a control prefix such as
``"<|theme|> adventure<|tone|> cheerful<|characters|> Alice, Bob<|story|>"`` built from a
:class:`StoryLabels`; the model has learned to follow it.  Pure standard library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace

END_OF_STORY = "<|endoftext|>"
STORY_START = "<|story|>"
CONTROL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|story|>",
    "<|theme|>",
    "<|tone|>",
    "<|genre|>",
    "<|characters|>",
)

#: Theme values; the order is also the tie-break order of :func:`derive_labels`.
THEMES: tuple[str, ...] = (
    "adventure",
    "friendship",
    "kindness",
    "courage",
    "sharing",
    "family",
    "nature",
    "magic",
    "honesty",
    "learning",
)
#: Tone values; the order is also the tie-break order.
TONES: tuple[str, ...] = ("cheerful", "calm", "sad", "funny", "exciting", "scary")
#: Genre values (lower case, multiword values use a space); the order is the tie-break order.
GENRES: tuple[str, ...] = ("fantasy", "animal fable", "everyday life", "mystery", "sci-fi")

#: The values of each label field, in tie-break order.
FIELD_VALUES: dict[str, tuple[str, ...]] = {"theme": THEMES, "tone": TONES, "genre": GENRES}


def field_values(field: str) -> tuple[str, ...]:
    """The values of label ``field`` ("theme", "tone" or "genre"); ValueError for another."""
    try:
        return FIELD_VALUES[field]
    except KeyError:
        raise ValueError(
            f"unknown label field {field!r}; choose one of: {', '.join(FIELD_VALUES)}"
        ) from None


@dataclass(frozen=True)
class StoryLabels:
    """The control settings of one story; empty fields mean "unspecified"."""

    theme: str | None = None
    tone: str | None = None
    genre: str | None = None
    characters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.characters, tuple):  # accept any sequence, store a tuple
            object.__setattr__(self, "characters", tuple(self.characters))


def control_prefix(labels: StoryLabels) -> str:
    """The text placed before a story, e.g.
    ``"<|theme|> adventure<|tone|> cheerful<|genre|> fantasy<|characters|> Alice, Bob<|story|>"``.

    Empty fields are omitted; the order is always theme, tone, genre, characters, and the
    prefix always ends with :data:`STORY_START` (so ``StoryLabels()`` gives ``"<|story|>"``).
    """
    parts: list[str] = []
    if labels.theme:
        parts.append(f"<|theme|> {labels.theme}")
    if labels.tone:
        parts.append(f"<|tone|> {labels.tone}")
    if labels.genre:
        parts.append(f"<|genre|> {labels.genre}")
    if labels.characters:
        parts.append(f"<|characters|> {', '.join(labels.characters)}")
    parts.append(STORY_START)
    return "".join(parts)


def drop_fields(labels: StoryLabels, rng: random.Random, p: float = 0.3) -> StoryLabels:
    """Drop each of the four fields independently with probability ``p``.

    Exactly four ``rng.random()`` draws are made (theme, tone, genre, characters), whether or
    not a field is set, so the random stream does not depend on the labels.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be between 0 and 1, got {p}")
    changes: dict[str, object] = {}
    for f in fields(StoryLabels):
        if rng.random() < p:
            changes[f.name] = () if f.name == "characters" else None
    return replace(labels, **changes)  # type: ignore[arg-type]

