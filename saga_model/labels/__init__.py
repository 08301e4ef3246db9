"""Deterministic story labels and character-name handling.

TinyStories has no labels, so Grain de Saga derives them from each story with small,
readable keyword lexicons (:mod:`.lexicons`, compiled by :mod:`.matching`):

* ``theme`` / ``tone`` / ``genre``: every value has a lexicon of keywords and phrases with
  weights.  A story's *raw* score for a value is the sum of the weights of the keyword
  occurrences; :func:`label_scores` turns that into a density (per 100 words) multiplied by a
  per-value calibration factor, so that ubiquitous words ("happy", "mom", "play") cannot swamp
  the rarer, more specific values.  :func:`derive_labels` picks the best value, or ``None``
  when nothing scores clearly (:mod:`.scoring`).
* ``characters``: named characters, found by :func:`find_characters` (:mod:`.characters`).

The very same rules measure adherence of generated stories (:func:`mentions`).

The package also validates user choices coming from the command line
(:func:`validate_choice`, :func:`parse_characters`, :mod:`.choices`) and swaps character
names for diversity during training (:func:`swap_names` in :mod:`.swapping`, with the
:data:`NAME_POOL` of :mod:`.names`).  The control prefix these labels become is the model's
input contract, in :mod:`saga_model.prefix` (re-exported here).

Everything here is pure standard library and deterministic.
"""

from ..prefix import (
    CONTROL_TOKENS,
    END_OF_STORY,
    GENRES,
    STORY_START,
    THEMES,
    TONES,
    StoryLabels,
    control_prefix,
    drop_fields,
)
from .characters import find_characters
from .choices import MAX_CHARACTERS, MAX_NAME_LENGTH, parse_characters, validate_choice
from .lexicons import CALIBRATION, LEXICONS
from .names import NAME_POOL, PET_NAMES
from .scoring import derive_labels, label_scores, mentions
from .swapping import swap_names

__all__ = [
    "CALIBRATION",
    "CONTROL_TOKENS",
    "END_OF_STORY",
    "GENRES",
    "LEXICONS",
    "MAX_CHARACTERS",
    "MAX_NAME_LENGTH",
    "NAME_POOL",
    "PET_NAMES",
    "STORY_START",
    "THEMES",
    "TONES",
    "StoryLabels",
    "control_prefix",
    "derive_labels",
    "drop_fields",
    "find_characters",
    "label_scores",
    "mentions",
    "parse_characters",
    "swap_names",
    "validate_choice",
]
