"""The Story screen, driven with real keys: first run, streaming, stop, save, export, errors."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button
from tui_helpers import (
    AppHome,
    notifications,
    replace_text,
    status_text,
    story_text,
    tell_a_story,
    wait_for,
)

from saga_model import (
    SamplingOptions,
    StoryPiece,
    StoryRequest,
    load_model,
    stream_story,
)
from tui.app import GrainApp
from tui.screens.story import StoryScreen
from tui.widgets.story_view import StoryView

SIZE = (80, 24)


async def test_first_run_says_there_is_no_model_and_offers_training(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StoryScreen)
        assert "No trained model yet" in app.screen.query_one(StoryView).shown.plain
        assert any("No trained model yet" in message for message in notifications(app))
        button = app.screen.query_one("#train-button", Button)
        assert button.display
        await pilot.press("ctrl+g")  # nothing to write with: a hint, no crash
        await pilot.pause()
        assert any("no model to write with" in message for message in notifications(app))
        await pilot.click("#train-button")
        await pilot.pause()
        assert app.current_mode == "training"


def long_story_seed(run: Path, request: StoryRequest,
                    max_tokens: int) -> tuple[int, list[StoryPiece]]:
    """The first seed from 11 whose story has at least 120 tokens (the tiny model is trained
    in the test session, so its stories differ slightly between machines), with its pieces."""
    model, tokenizer = load_model(run)
    for seed in range(11, 60):
        pieces = list(stream_story(model, tokenizer, request,
                                   SamplingOptions(max_tokens=max_tokens, seed=seed)))
        if pieces[-1].n_tokens >= 120:
            return seed, pieces
    raise AssertionError("the tiny model ends every story before 120 tokens")


async def test_generate_streams_the_story_token_by_token(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    request = StoryRequest.create(characters="Zara, Milo")
    seed, expected = long_story_seed(tiny_run, request, max_tokens=300)
    shown: list[tuple[int, str]] = []  # (length of the story text, status line) at each piece
    original = StoryView.append

    def spy(view: StoryView, piece: str) -> None:
        original(view, piece)
        shown.append((len(view.text), status_text(view.app)))

    monkeypatch.setattr(StoryView, "append", spy)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        await replace_text(pilot, "seed", str(seed))
        await replace_text(pilot, "max_tokens", "300")
        await replace_text(pilot, "characters", "Zara, Milo")
        await pilot.press("enter")  # enter in a field generates
        await wait_for(pilot, lambda: "max length" in status_text(app)
                       or "done" in status_text(app), what="story finished")
        final = story_text(app)
        assert f"{expected[-1].n_tokens} tokens" in status_text(app)
        assert "/s" in status_text(app)
        await wait_for(pilot, lambda: app.screen.query_one("#story-pane").border_subtitle
                       == f"seed {seed}", what="the seed under the story")
    lengths = [n for n, _ in shown]
    # Streamed: the first token at once, then the pieces of each frame together (tui.pacing).
    assert len(shown) >= 2 and lengths == sorted(lengths) and lengths[-1] == len(final)
    counts = [status.split(" tokens")[0].split("· ")[-1] for _, status in shown[:-1]]
    assert all("writing" in status for _, status in shown[:-1])
    assert len(set(counts)) == len(counts), "the token count did not follow the pieces"
    assert final == "".join(piece.text for piece in expected)


def slow_down_generation(monkeypatch: pytest.MonkeyPatch, delay: float) -> list[StoryPiece]:
    """Make the real model stream slowly (like a big model on a slow machine); returns the
    list of pieces the generator produced, to see when it stops being pulled."""
    produced: list[StoryPiece] = []

    def slow(*args: Any, **kwargs: Any) -> Iterator[StoryPiece]:
        for piece in stream_story(*args, **kwargs):
            time.sleep(delay)
            produced.append(piece)
            yield piece

    monkeypatch.setattr("saga_model.stream_story", slow)
    return produced


async def test_escape_stops_at_once_and_a_new_story_replaces_a_running_one(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    produced = slow_down_generation(monkeypatch, delay=0.05)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        await replace_text(pilot, "max_tokens", "2000")
        await replace_text(pilot, "seed", "5")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(produced) >= 3, what="some text")
        await pilot.press("escape")
        assert "stopped" in status_text(app)
        stopped_at, pulled = story_text(app), len(produced)
        await pilot.pause(0.5)
        assert story_text(app) == stopped_at, "text kept coming after escape"
        assert len(produced) <= pulled + 1, "the model kept generating after escape"
        assert "grain-model" not in [thread.name for thread in threading.enumerate()]

        # A new story while one is being written: the first is cancelled and nothing of it
        # leaks into the second.
        await replace_text(pilot, "max_tokens", "40")
        await replace_text(pilot, "seed", "8")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(story_text(app)) > 0, what="first story started")
        pulled = len(produced)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "writing" not in status_text(app)
                       and "tokens" in status_text(app), what="second story finished")
        second = story_text(app)
    model, tokenizer = load_model(tiny_run)
    expected = list(stream_story(model, tokenizer, StoryRequest(),
                                 SamplingOptions(max_tokens=40, seed=8)))
    assert second == "".join(piece.text for piece in expected)
    # The first story stopped at its next piece (the second waited for it, not for its end).
    assert len(produced) - pulled <= len(expected) + 1


async def test_saved_story_is_found_after_a_restart_and_told_again_exactly(
        app_home: AppHome, tiny_run: Path) -> None:
    app_home.install_model(tiny_run)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        written = await tell_a_story(pilot, app, characters="Zara", max_tokens="60")
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"The dragon picnic", "enter")
        await pilot.pause()
        assert any("Saved" in message for message in notifications(app))

    # The run folder is renamed: "tell it again" finds its model by fingerprint.
    (app_home.runs / "tiny").rename(app_home.runs / "tiny-moved")
    app = GrainApp()  # a new session: the story is still there
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#story-table")
        assert table.row_count == 1
        await pilot.press("ctrl+f", *"zzz")
        await pilot.pause()
        assert table.row_count == 0
        await pilot.press("ctrl+a", "ctrl+k", *"DRAGON")
        await pilot.pause()
        assert table.row_count == 1
        assert "The dragon picnic" in str(app.screen.query_one("#story-meta").render())
        assert app.screen.query_one("#library-story", StoryView).text == written
        saved = app.library.search("dragon")[0].story
        assert saved.characters == "Zara" and saved.seed == saved.sampling["seed"]
        assert set(saved.sampling) == set(dataclasses.asdict(SamplingOptions()))
        assert saved.model_id.startswith("sha256:")

        await pilot.press("enter")  # back to the list (the search field hands over focus)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, StoryScreen) and (
            "done" in status_text(app) or "max length" in status_text(app)), what="told again")
        assert story_text(app).strip() == written
        await wait_for(pilot, lambda: app.screen.query_one("#story-pane").border_subtitle
                       == f"seed {saved.seed}", what="the seed under the story")
        assert not [m for m in notifications(app) if "come out differently" in m]


async def test_unreadable_model_is_reported_not_fatal(app_home: AppHome,
                                                      tiny_run: Path) -> None:
    broken = app_home.install_model(tiny_run, name="broken")
    (broken / "model.safetensors").write_bytes(b"not a model at all")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "error" in status_text(app), what="load error")
        assert "Could not load the model" in app.screen.query_one(StoryView).shown.plain
        assert any("Could not load the model" in message for message in notifications(app))
        await pilot.press("ctrl+g")  # trying again reports again, still no crash
        await wait_for(pilot, lambda: len(notifications(app)) >= 2, what="second error")
        assert app.is_running
