"""What keeps the screen's work beside the model small while a story streams in: pieces come
a frame at a time, the story pane never lays out the screen and draws each line once, a new
story needs no frame of its own before its first token, the model starts within the key
press, the end is painted as soon as it arrives, and the footer restyles its keys in place."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.content import Content
from textual.screen import Screen
from textual.widgets._footer import FooterKey
from tui_helpers import (
    AppHome,
    empty_story_pane,
    replace_text,
    scripted_story,
    status_text,
    story_view,
    tell_a_story,
    wait_for,
)

from tui.app import GrainApp
from tui.pacing import FRAME_SECONDS
from tui.screens import story as story_screen
from tui.screens.story import StoryScreen
from tui.session import ModelCache
from tui.widgets.key_footer import KeyFooter

SIZE = (80, 24)
SENTENCE = ("Mia found a little red boat by the pond and pushed it out onto the water, where "
            "it sailed past the ducks and the reeds until it reached the other side.\n")
WORDS = SENTENCE.split(" ") * 8


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (a one-item list, read after the calls)."""
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


async def test_a_growing_story_never_lays_out_the_screen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with empty_story_pane() as (pilot, story):
        await pilot.pause()
        layouts = count_calls(monkeypatch, Screen, "_refresh_layout")
        for start in range(0, len(WORDS), 10):  # ten words a frame, far past the pane's end
            for word in WORDS[start:start + 10]:
                story.append(word + " ")
            await pilot.pause(0.02)
        assert story.max_scroll_y > 10 and story.scroll_y == story.max_scroll_y
        assert layouts[0] == 0


async def test_the_pane_draws_only_the_lines_a_scroll_brings_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with empty_story_pane() as (pilot, story):
        for word in WORDS[:60]:
            story.append(word + " ")
        await pilot.pause()
        drawn = count_calls(monkeypatch, Content, "render_segments")
        story.scroll_to(y=story.scroll_y - 1, animate=False, immediate=True)
        await pilot.pause()
        assert story.scroll_y == story.max_scroll_y - 1
        assert drawn[0] == 1  # the line that came into view; the others are kept


async def test_pieces_reach_the_screen_a_frame_at_a_time(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    pieces = [word + " " for word in WORDS[:200]]
    scripted_story(monkeypatch, pieces, delay=0.003)  # over 0.6 s: several frames
    handled = count_calls(monkeypatch, StoryScreen, "on_story_screen_piece")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        started = time.monotonic()
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "done" in status_text(app), what="story finished")
        took = time.monotonic() - started
        assert story_view(app).text == "".join(pieces)
    # The first token at once, then one message a frame, the end at once.
    assert 3 <= handled[0] <= 2 + took / FRAME_SECONDS + 1 < len(pieces) / 10


async def test_the_end_of_a_story_is_painted_as_soon_as_it_arrives(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    pieces = [word + " " for word in WORDS[:30]]
    scripted_story(monkeypatch, pieces, delay=0.005)
    app = GrainApp()
    painted: list[tuple[str, str]] = []  # the story pane and the status line of each frame
    at_end: list[list[tuple[str, str]]] = []  # the frames painted while the end was handled
    display, handle = App._display, StoryScreen.on_story_screen_piece

    def recorded(self: App[Any], screen: Screen[Any], renderable: Any) -> None:
        display(self, screen, renderable)
        if renderable is not None:
            painted.append((story_view(app).text, status_text(app)))

    def handled(screen: StoryScreen, message: StoryScreen.Piece) -> None:
        before = len(painted)
        handle(screen, message)
        if message.update.finish_reason is not None:
            at_end.append(painted[before:])

    monkeypatch.setattr(App, "_display", recorded)
    monkeypatch.setattr(StoryScreen, "on_story_screen_piece", handled)
    async with app.run_test(size=SIZE) as pilot:
        await tell_a_story(pilot, app)
    # Painted by the last piece's handler itself, not at the screen's next update tick (up to
    # two 60 fps periods later).
    assert [len(frames) for frames in at_end] == [1], "the end waited for the update tick"
    text, status = at_end[0][0]
    assert text == "".join(pieces) and status.startswith("done")


async def test_the_model_starts_before_the_key_press_is_done_with(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    scripted_story(monkeypatch, ["Once ", "upon ", "a ", "time."], delay=0.05)
    app = GrainApp()
    running: list[bool] = []  # was the model's thread running when ctrl+g's action returned?
    generate = StoryScreen.action_generate

    def recorded(screen: StoryScreen) -> None:
        generate(screen)
        running.append("grain-model" in [thread.name for thread in threading.enumerate()])

    monkeypatch.setattr(StoryScreen, "action_generate", recorded)
    async with app.run_test(size=SIZE) as pilot:
        await tell_a_story(pilot, app)
    assert running == [True]  # no worker task and pooled thread to wait for first


async def test_a_new_story_replaces_the_last_one_in_the_frame_of_its_first_token(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    scripted_story(monkeypatch, ["Once ", "upon ", "a ", "time."], delay=0.01)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await tell_a_story(pilot, app)
        await pilot.pause()
        shown: list[str] = []  # the story pane's text at each frame
        display = App._display

        def recorded(self: App[Any], screen: Screen[Any], renderable: Any) -> None:
            display(self, screen, renderable)
            if renderable is not None:
                shown.append(story_view(app).text)

        monkeypatch.setattr(App, "_display", recorded)
        scripted_story(monkeypatch, ["Mia ", "sang."], delay=0.01, first_delay=0.05)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "done" in status_text(app)
                       and story_view(app).text == "Mia sang.",
                       what="second story")
        # The first frame after the key press shows the new story's first token: no frame of
        # an empty pane (or of a status line alone) while the model starts.
        assert shown[0].startswith("Mia") and "" not in shown

        # A model slow to start: the pane is emptied after a moment, not left with the last
        # story.
        scripted_story(monkeypatch, ["Late."], delay=0.01, first_delay=1.0)
        await pilot.press("ctrl+g")
        await pilot.pause(story_screen.CLEAR_WITHIN_SECONDS + 0.2)
        assert story_view(app).text == "" and "writing" in status_text(app)
        await wait_for(pilot, lambda: "done" in status_text(app), what="late story")
        assert story_view(app).text == "Late."


async def test_the_footer_restyles_its_keys_in_place_as_a_story_starts_and_ends(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    monkeypatch.setattr(story_screen, "DETAILS_AFTER_SECONDS", 0.1)
    scripted_story(monkeypatch, [word + " " for word in WORDS[:40]], delay=0.01)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        footer = app.screen.query_one(KeyFooter)

        def keys() -> dict[str, FooterKey]:
            return {key.action: key for key in footer.query(FooterKey)}

        before = keys()
        assert before["stop"].has_class("-disabled") and before["save"].has_class("-disabled")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: not keys()["stop"].has_class("-disabled"),
                       what="the stop key lit while writing (after DETAILS_AFTER_SECONDS)")
        assert keys()["save"].has_class("-disabled")
        await wait_for(pilot, lambda: "done" in status_text(app), what="story finished")
        await wait_for(pilot, lambda: not keys()["save"].has_class("-disabled"),
                       what="the save key lit")
        assert keys()["stop"].has_class("-disabled")
        assert keys() == before  # the very same widgets: restyled, not rebuilt


async def test_a_quick_story_leaves_the_footer_and_the_seed_alone_until_it_ends(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    scripted_story(monkeypatch, [word + " " for word in WORDS[:20]], delay=0.01)
    app = GrainApp()
    restyled: list[str] = []  # the status line each time the footer's keys were restyled
    original = KeyFooter._restyle

    def recorded(footer: KeyFooter) -> bool:
        restyled.append(status_text(app))
        return original(footer)

    monkeypatch.setattr(KeyFooter, "_restyle", recorded)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        pane = app.screen.query_one("#story-pane")
        await replace_text(pilot, "seed", "7")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: story_view(app).text.startswith("Mia"), what="story started")
        assert not pane.border_subtitle  # the seed comes with the end of the story
        await wait_for(pilot, lambda: "done" in status_text(app), what="story finished")
        await wait_for(pilot, lambda: pane.border_subtitle == "seed 7", what="the seed")
        await wait_for(pilot, lambda: len(restyled) > 0, what="the keys after the end")
        assert not [line for line in restyled if "writing" in line]


def test_the_decoder_is_built_once_per_model(tiny_run: Path, tiny_model_dir: Path) -> None:
    cache = ModelCache()
    decoder, tokenizer = cache.decoder(tiny_run)
    assert cache.decoder(tiny_run) == (decoder, tokenizer)
    other, _ = cache.decoder(tiny_model_dir)
    assert other is not decoder
    assert cache.decoder(tiny_model_dir)[0] is other
