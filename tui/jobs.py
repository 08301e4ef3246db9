"""What the Story screen asks the model for, and how that is kept in (and read back from) the
library so that "tell it again" gives the very same story.

A story is reproduced by the same model, request and sampling options (seed included), so a
saved story stores every field of :class:`saga_model.SamplingOptions`, the request (theme,
tone, genre, characters, opening) and the model's folder and fingerprint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import saga_model

from .library import SavedStory

if TYPE_CHECKING:
    from saga_model import SamplingOptions, StoryRequest

MAX_SEED = 999_999  # random seeds stay short enough to read off the screen and type back
#: Values for options a story saved by an older version did not record: what was used then.
_BEFORE_RECORDED = {"name_boost": 0.0}


@dataclass
class StoryJob:
    """One generation: what to write, how, with which model, and where it came from.

    ``parent_id`` is the library story this one grows from (continued or branched), and
    ``title`` the title to suggest when it is saved ("" to derive one from the text).
    """

    request: StoryRequest
    options: SamplingOptions
    model_path: Path
    model_label: str
    parent_id: int | None = None
    title: str = ""


def options_from_saved(sampling: dict[str, Any]) -> SamplingOptions:
    """The sampling options a story was written with (unknown keys ignored); raises
    :class:`~saga_model.SagaError` when the stored values are not valid options."""
    names = {f.name for f in dataclasses.fields(saga_model.SamplingOptions)}
    values = {**_BEFORE_RECORDED, **sampling}
    try:
        return saga_model.SamplingOptions(**{k: v for k, v in values.items() if k in names})
    except TypeError as exc:
        raise saga_model.SagaError(f"the story's saved settings are damaged ({exc})") from None


def request_from_saved(story: SavedStory, opening: str | None = None) -> StoryRequest:
    """The request a saved story was written with (``opening`` replaces its opening)."""
    names = tuple(name.strip() for name in story.characters.split(",") if name.strip())
    return saga_model.StoryRequest(theme=story.theme or None, tone=story.tone or None,
                                   genre=story.genre or None, characters=names,
                                   opening=story.opening if opening is None else opening)


def saved_story(job: StoryJob, text: str, title: str, model_id: str) -> SavedStory:
    """The story written by ``job`` as the library keeps it."""
    request, options = job.request, job.options
    return SavedStory(
        title=title, text=text, theme=request.theme or "", tone=request.tone or "",
        genre=request.genre or "", characters=", ".join(request.characters),
        opening=request.opening, model=job.model_label, sampling=dataclasses.asdict(options),
        parent_id=job.parent_id, seed=options.seed, model_path=str(job.model_path),
        model_id=model_id)
