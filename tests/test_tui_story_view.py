"""The story pane while a story streams in: it follows the end (also when the text re-wraps
as the scrollbar appears), stays where the user scrolled, and spaces the paragraphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import AppHome, empty_story_pane, scripted_story, status_text, story_view, wait_for

from tui.app import GrainApp
from tui.pacing import FramePacer
from tui.session import StoryUpdate
from tui.widgets.story_view import with_paragraph_space

SIZE = (80, 24)
PARAGRAPH = ("Mia found a little red boat by the pond and pushed it out onto the water, where "
             "it sailed past the ducks and the reeds until it reached the other side. ")
#: Eight paragraphs, one newline apart as the model writes them, streamed word by word.
WORDS = "\n".join([PARAGRAPH.strip()] * 8 + ["She played with the boat all day long."]).split(" ")


async def test_the_end_stays_in_view_when_the_scrollbar_appears_and_the_text_rewraps() -> None:
    for n_words in range(56, 92, 3):  # the story ends as the scrollbar appears, or later
        async with empty_story_pane() as (pilot, story):
            for word in WORDS[:n_words]:  # pieces faster than frames, as under load
                story.append(word + " ")
            await pilot.pause(0.5)  # the scrollable height fits the text again
            assert story.max_scroll_y > 0
            assert story.scroll_y == story.max_scroll_y, f"end hidden after {n_words} words"


async def test_a_short_story_starts_at_the_top_of_the_pane() -> None:
    async with empty_story_pane() as (pilot, story):
        story.append("Mia found a boat.")
        await pilot.pause(0.05)
        assert story.scroll_y == 0 and story.max_scroll_y == 0


async def test_the_view_stays_where_the_user_scrolled_up(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    scripted_story(monkeypatch, [word + " " for word in WORDS], delay=0.005)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        await pilot.press("ctrl+g")
        story = story_view(app)
        await wait_for(pilot, lambda: story.scroll_y > 3, what="the view following the text")
        story.focus()
        await wait_for(pilot, lambda: app.focused is story, what="the story focused")
        await pilot.press("home")
        await wait_for(pilot, lambda: "done" in status_text(app), what="story finished")
        await pilot.pause(0.5)
        assert story.scroll_y == 0 < story.max_scroll_y
        await pilot.press("ctrl+n")  # a continuation follows its end again
        await wait_for(pilot, lambda: "done" in status_text(app) and story.text.count("boat") == 18,
                       what="continuation finished")
        await pilot.pause(0.5)
        assert story.scroll_y == story.max_scroll_y > 0


def test_paragraphs_are_shown_with_a_blank_line_between_them() -> None:
    assert with_paragraph_space("One.\nTwo.\n\nThree.\n \nFour.") == \
        "One.\n\nTwo.\n\nThree.\n\nFour."


def test_pieces_reach_the_screen_at_once_then_a_frame_at_a_time() -> None:
    now = [0.0]
    shown: list[StoryUpdate] = []
    pacer = FramePacer(shown.append, interval=0.1, clock=lambda: now[0])

    def piece(text: str, n_tokens: int, at: float, finish: str | None = None) -> None:
        now[0] = at
        pacer(StoryUpdate(text, n_tokens, at, None, finish, "sha256:x"))

    piece("Once", 0, 0.0)  # the opening of a continuation
    piece(" upon", 1, 0.01)  # the first new token: at once
    piece(" a", 2, 0.02)
    piece(" time", 3, 0.05)
    piece(",", 4, 0.12)  # a frame later: all that waited
    piece(" Mia", 5, 0.13, "end")  # the end: at once
    assert [(u.text, u.n_tokens) for u in shown] == [
        ("Once", 0), (" upon", 1), (" a time,", 4), (" Mia", 5)]
    assert shown[-1].finish_reason == "end"
