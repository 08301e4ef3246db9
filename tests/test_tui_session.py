"""The story session without any UI: every request source, the model cache, streaming,
cancellation and saved stories."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import saga_model
from saga_model import SagaError, SamplingOptions, StoryPiece, StoryRequest, load_model, tell_story
from tui.library import SavedStory
from tui.models import ModelChoice
from tui.prefs import StorySettings
from tui.session import (
    MAX_SEED,
    ModelCache,
    StoryJob,
    StorySession,
    StoryUpdate,
    branch,
    continuation,
    job_from_saved,
    model_fingerprint,
    new_story,
    saved_story,
    story_from_settings,
)

TEXT = "Zara woke up early. She packed a red kite. The wind was strong."


def job_for(model: Path, **sampling: Any) -> StoryJob:
    request = StoryRequest.create(characters="Zara")
    return StoryJob(request, SamplingOptions(**{"max_tokens": 40, "seed": 4, **sampling}),
                    model, "tiny")


# -- where requests come from -------------------------------------------------------------------

def test_the_form_gives_any_for_empty_choices_and_draws_a_seed() -> None:
    request, options = story_from_settings(StorySettings(tone="Happy", characters="Zara, Milo",
                                                         opening="Once  upon a time"))
    assert request == StoryRequest(tone="cheerful", characters=("Zara", "Milo"),
                                   opening="Once upon a time")
    assert request.theme is None and request.genre is None  # "" is "any"
    assert options.seed is not None and 0 <= options.seed <= MAX_SEED
    assert dataclasses.replace(options, seed=None) == SamplingOptions()  # the model's defaults
    assert story_from_settings(StorySettings(seed=7))[1].seed == 7
    with pytest.raises(SagaError, match="choose one of"):
        story_from_settings(StorySettings(theme="spaceships"))


def test_the_command_line_leaves_unset_options_to_the_model_package() -> None:
    request, options = new_story("adventure", None, None, "Zara", None, seed=3,
                                 temperature=None, top_p=0.5, max_tokens=None)
    assert request == StoryRequest(theme="adventure", characters=("Zara",))
    assert options == SamplingOptions(top_p=0.5, seed=3)
    with pytest.raises(SagaError, match="temperature must be >= 0"):
        new_story(temperature=-1)


def test_a_saved_story_is_told_again_with_its_request_settings_and_seed(tmp_path: Path) -> None:
    job = StoryJob(StoryRequest.create("courage", None, "fantasy", "Zara, Milo", "Once"),
                   SamplingOptions(temperature=0.5, top_k=7, name_boost=1.5, seed=3), tmp_path,
                   "mine", parent_id=4, title="Kite")
    saved = saved_story(job, TEXT, "Kite", "sha256:1")
    assert (saved.theme, saved.tone, saved.characters) == ("courage", "", "Zara, Milo")
    again = job_from_saved(dataclasses.replace(saved, id=9), tmp_path, "mine")
    assert again == job  # request, options (seed included), model, parent and title

    future = dataclasses.replace(saved, sampling={**saved.sampling, "future_option": 1})
    assert job_from_saved(future, tmp_path, "mine").options == job.options
    old = dataclasses.replace(saved, sampling={"max_tokens": 60}, seed=None)
    options = job_from_saved(old, tmp_path, "mine").options
    assert options.name_boost == 0.0 and options.max_tokens == 60  # as written back then
    assert options.seed is not None  # drawn: the story can be told again from now on
    for damaged in ({"temperature": "hot"}, {"top_p": 7}):
        with pytest.raises(SagaError, match="damaged"):
            job_from_saved(dataclasses.replace(saved, sampling=damaged), tmp_path, "mine")


def test_continuations_and_branches_grow_new_linked_versions(tmp_path: Path) -> None:
    saved = dataclasses.replace(
        saved_story(job_for(tmp_path), TEXT + "\n", "Kite (continued)", ""), id=5)
    grown = job_from_saved(saved, tmp_path, "tiny", "continue")
    assert grown.request.opening == TEXT + "\n"  # the continuation is a new paragraph
    assert grown.options.min_tokens == min(80, grown.options.max_tokens)
    assert (grown.parent_id, grown.title) == (5, "Kite (continued)")  # one suffix, not two
    assert grown.options.seed != 4 and grown.request.characters == ("Zara",)
    end = TEXT.index("She")
    branched = job_from_saved(saved, tmp_path, "tiny", "branch", end)
    assert branched.request.opening == "Zara woke up early."
    assert (branched.parent_id, branched.title) == (5, "Kite (new version)")

    on_screen = job_for(tmp_path)
    assert continuation(on_screen, TEXT, None, "Kite").request.opening == TEXT + "\n"
    assert branch(on_screen, TEXT, end, 2, "Kite").parent_id == 2


# -- models ----------------------------------------------------------------------------------

def test_model_cache_loads_once_and_reports_errors(tiny_run: Path, tmp_path: Path) -> None:
    cache = ModelCache()
    first = cache.get(tiny_run)
    assert cache.get(tiny_run) is first
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(SagaError):
        cache.get(tmp_path)
    with pytest.raises(SagaError, match="Could not load the model"):
        StorySession().preload(tmp_path)


def test_a_saved_story_finds_its_model_by_fingerprint(tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    session = StorySession()
    fingerprint = model_fingerprint(tiny_model_dir)
    assert session.preload(tiny_model_dir) == fingerprint
    story = SavedStory(title="Kite", text=TEXT, model_path=str(tmp_path / "gone"),
                       model_id=fingerprint)
    moved = ModelChoice("moved", tiny_model_dir)
    assert session.model_for(story, [moved], None) == (tiny_model_dir, True)
    assert session.model_for(story, [], tmp_path) == (tmp_path, False)
    (tiny_model_dir / "model.safetensors").write_bytes(b"retrained")
    changed = dataclasses.replace(story, model_path=str(tiny_model_dir))
    assert session.model_for(changed, [moved], None) == (None, False)


# -- writing ---------------------------------------------------------------------------------

def test_tell_streams_the_story_from_a_fresh_thread(tiny_run: Path) -> None:
    job = job_for(tiny_run)
    shown: list[tuple[StoryUpdate, str]] = []
    last = StorySession().tell(job, lambda u: shown.append((u, threading.current_thread().name)),
                               lambda: False)
    model, tokenizer = load_model(tiny_run)
    assert "".join(u.text for u, _ in shown) == tell_story(model, tokenizer, job.request,
                                                           job.options)
    assert last is shown[-1][0] and last.finish_reason in ("end", "length")
    assert {name for _, name in shown} == {"grain-model"}  # never the caller's thread
    assert last.model_id == model_fingerprint(tiny_run)
    counts = [u.n_tokens for u, _ in shown]
    assert counts == sorted(counts) and last.n_tokens == counts[-1] > 1
    assert last.first_token is not None and 0 < last.first_token <= last.elapsed
    assert last.tokens_per_sec > 0 and last.writing_tokens_per_sec > 0


def test_time_to_first_token_is_kept_apart_from_the_writing_speed() -> None:
    update = StoryUpdate("x", n_tokens=11, elapsed=3.0, first_token=2.0, finish_reason=None,
                         model_id="")
    assert update.tokens_per_sec == pytest.approx(11 / 3)  # as grain-generate counts
    assert update.writing_tokens_per_sec == pytest.approx(10.0)  # the opening's reading left out


def test_a_cancelled_story_stops_pulling_from_the_model(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    produced: list[StoryPiece] = []

    def counted(*args: Any, **kwargs: Any) -> Iterator[StoryPiece]:
        for piece in saga_model.generate.stream_story(*args, **kwargs):
            produced.append(piece)
            yield piece

    monkeypatch.setattr("saga_model.stream_story", counted)
    shown: list[StoryUpdate] = []
    job = job_for(tiny_run, max_tokens=2000)
    assert StorySession().tell(job, shown.append, lambda: len(shown) >= 3) is None
    assert len(shown) == 3 and len(produced) == 4  # the 4th piece is never shown
    assert StorySession().tell(job, shown.append, lambda: True) is None
    assert len(shown) == 3


def test_a_model_that_cannot_load_is_an_error_not_a_crash(tmp_path: Path) -> None:
    shown: list[StoryUpdate] = []
    with pytest.raises(SagaError, match="Could not load the model"):
        StorySession().tell(job_for(tmp_path), shown.append, lambda: False)
    assert shown == []
    failed: list[str] = []
    StorySession().start_telling(job_for(tmp_path), shown.append, lambda: False,
                                 failed.append)  # returns at once, the error comes after
    for thread in threading.enumerate():
        if thread.name == "grain-model":
            thread.join(30)
    assert shown == [] and len(failed) == 1 and failed[0].startswith("Could not load the model")
