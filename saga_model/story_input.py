"""What a user asks for: the sampling options and the one builder every front end uses.

``grain-generate``, the terminal app's form, ``grain-tui --inline`` and a saved story all
turn user input into a :class:`~saga_model.StoryRequest` and :class:`SamplingOptions` through
:func:`story_request`, so an empty choice, a name list or a missing value means the same
everywhere, and the sampling defaults live only in :class:`SamplingOptions`.

This module imports no MLX or NumPy (the request type is loaded when first built), so an
interface can read the defaults without paying for the model's imports.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SagaError

if TYPE_CHECKING:
    from .generate import StoryRequest


@dataclass
class SamplingOptions:
    """How the next token is picked. ``temperature=0`` means greedy.

    ``repetition_penalty`` (divides positive logits, multiplies negative ones) and
    ``presence_penalty`` (subtracted from logits) apply to the tokens among the story's last
    ``repetition_window``; ``no_repeat_ngram=n`` forbids repeating any n tokens of the story
    (0 = off). The defaults come from the judge's sampling sweep (docs/quality.md).
    ``min_tokens``: the story does not end before this many new tokens (a continuation of a
    finished story must add something: the model would close it at once).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.15
    repetition_penalty: float = 1.1
    presence_penalty: float = 0.0
    repetition_window: int = 64
    no_repeat_ngram: int = 0
    max_tokens: int = 400
    seed: int | None = None
    name_boost: float = 5.0
    min_tokens: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name} must be a finite number" for name in
                    ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                     "name_boost")
                    if not math.isfinite(getattr(self, name))]
        if self.seed is not None and self.seed < 0:
            problems.append("seed must be >= 0")
        if self.temperature < 0:
            problems.append("temperature must be >= 0")
        if self.top_k < 0:
            problems.append("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            problems.append("min_p must be in [0, 1)")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be > 0")
        if self.presence_penalty < 0:
            problems.append("presence_penalty must be >= 0")
        if self.repetition_window <= 0:
            problems.append("repetition_window must be > 0")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            problems.append("no_repeat_ngram must be 0 (off) or >= 2")
        if self.max_tokens <= 0:
            problems.append("max_tokens must be > 0")
        if self.name_boost < 0:
            problems.append("name_boost must be >= 0")
        if self.min_tokens < 0:
            problems.append("min_tokens must be >= 0")
        if problems:
            raise SagaError("; ".join(problems))


SAMPLING_FIELDS = frozenset(field.name for field in dataclasses.fields(SamplingOptions))
"""The names :func:`story_request` accepts as sampling options."""


def story_request(theme: str | None = None, tone: str | None = None, genre: str | None = None,
                  characters: str | Sequence[str] | None = None, opening: str | None = None,
                  **sampling: float | int | None) -> tuple[StoryRequest, SamplingOptions]:
    """The request and sampling options for a story, from user input.

    ``None`` or an empty string means "any" for a theme, tone or genre (matched ignoring
    case); ``characters`` is "Alice, Bob" or a sequence of names. ``sampling`` takes the fields
    of :class:`SamplingOptions` by name; one left out or ``None`` keeps its default. Raises
    :class:`SagaError` naming what is wrong (an unknown choice or option, a value out of range
    or of the wrong type).
    """
    from .generate import StoryRequest

    unknown = sorted(set(sampling) - SAMPLING_FIELDS)
    if unknown:
        raise SagaError(f"unknown sampling option(s): {', '.join(unknown)}")
    given = {name: value for name, value in sampling.items() if value is not None}
    request = StoryRequest.create(theme, tone, genre, characters, opening)
    try:
        options = SamplingOptions(**given)  # type: ignore[arg-type]
    except TypeError as exc:  # a comparison with a value of the wrong type
        raise SagaError(f"invalid sampling options {given}: {exc}") from None
    return request, options
