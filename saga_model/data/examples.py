"""Training and validation examples (control prefix + story) and the token splits they form."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import swap_names
from ..prefix import STORY_START, StoryLabels, control_prefix, drop_fields
from .corpus import SEPARATOR


def conditioned_example(story: str, labels: StoryLabels, rng: random.Random,
                        field_dropout: float, name_swap: float) -> str:
    """Training text of one story: control prefix (some fields dropped, names swapped) + story.

    Names are swapped in the story and in the prefix alike, before fields are dropped: the
    model sees many names, and learns to use the ones the prefix gives.
    """
    if labels.characters and rng.random() < name_swap:
        story, names = swap_names(story, labels.characters, rng)
        labels = StoryLabels(labels.theme, labels.tone, labels.genre, names)
    return control_prefix(drop_fields(labels, rng, field_dropout)) + story + SEPARATOR


def unconditioned_example(story: str) -> str:
    """Text of a story with an empty control prefix (how validation loss is measured)."""
    return STORY_START + story + SEPARATOR


def example_rng(seed: int, copy: int, key: bytes) -> random.Random:
    """The random stream of one conditioned copy of one story: independent of the other stories,
    so that any number of workers produce the same examples."""
    return random.Random(f"{seed}-{copy}-{key.hex()}")


@dataclass
class TokenSplit:
    """One split as a flat token stream plus the offset where each example starts."""

    tokens: np.ndarray
    starts: np.ndarray
    n_bytes: int

    @property
    def n_tokens(self) -> int:
        """Length of the token stream."""
        return int(self.tokens.shape[0])


@dataclass
class PreparedData:
    """Token streams of both splits, ready to batch."""

    train: TokenSplit
    valid: TokenSplit
    cache_dir: Path
