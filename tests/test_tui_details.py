"""Details a user notices, driven with real keys at 80x24: reading a library story full
screen, no second copy of a saved story, the model picker, notices shown as plain text,
plurals, and the theme list of the command palette."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, Select
from textual.widgets._select import SelectOverlay
from textual.widgets._toast import Toast
from tui_helpers import AppHome, notifications, status_text, wait_for

import saga_model
from saga_model import StoryPiece
from tui.app import GrainApp
from tui.library import SavedStory, StoryLibrary
from tui.paths import library_file
from tui.screens.help import HelpScreen
from tui.screens.library import LibraryScreen
from tui.screens.prompt import PromptDialog
from tui.themes import BEDTIME_THEME
from tui.widgets.generation_status import GenerationStatus
from tui.widgets.story_view import StoryView

SIZE = (80, 24)
STORY = "Mia found a red boat. She sailed it across the pond. The ducks followed her home."


def scripted_red_boat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model "writes" STORY word by word (after the opening, as the real one)."""

    def stream(_model: Any, _tokenizer: Any, request: saga_model.StoryRequest,
               *args: Any) -> Iterator[StoryPiece]:
        if request.opening:
            yield StoryPiece(request.opening, 0, 0.0)
        words = STORY.split(" ")
        for index, word in enumerate(words, start=1):
            yield StoryPiece(" " + word if index > 1 or request.opening else word, index, 0.1,
                             "end" if index == len(words) else None)

    monkeypatch.setattr(saga_model, "stream_story", stream)


async def write_story(pilot: Any, app: GrainApp) -> None:
    """Wait for the model, write a story with ctrl+g and wait until it is done."""
    await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: "done" in status_text(app), what="story written")


def save_the_red_boat(model: str = "") -> None:
    """STORY in the library, as another session would leave it."""
    library = StoryLibrary(library_file())
    library.add(SavedStory(title="The red boat", text=STORY, model=model,
                           created_at=datetime(2025, 3, 1, tzinfo=UTC)))
    library.close()


def story_count() -> int:
    library = StoryLibrary(library_file())
    try:
        return len(library.search())
    finally:
        library.close()


async def test_enter_reads_a_library_story_full_screen_and_escape_comes_back(
        app_home: AppHome) -> None:
    save_the_red_boat()
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LibraryScreen)
        await pilot.press("enter")
        await pilot.pause()
        story = screen.query_one("#library-story", StoryView)
        assert screen.maximized is story and story.has_focus
        assert story.region.width == SIZE[0]  # the whole width of the terminal
        await pilot.press("escape")
        await pilot.pause()
        assert screen.maximized is None
        assert screen.query_one("#story-table", DataTable).has_focus


async def test_a_story_is_saved_once_and_a_story_told_again_is_not_saved_twice(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    scripted_red_boat(monkeypatch)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await write_story(pilot, app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert story_count() == 1
        await pilot.press("ctrl+s")  # the same story again: a warning, no dialog, no copy
        await pilot.pause()
        assert not isinstance(app.screen, PromptDialog)
        assert any("already in the library" in n for n in notifications(app))
        assert story_count() == 1

        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("t")  # told again: the very same story, already saved
        await wait_for(pilot, lambda: "done" in status_text(app)
                       and app.screen.query_one(StoryView).text != "", what="told again")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, PromptDialog) and story_count() == 1


async def test_the_picker_offers_only_models_and_switching_keeps_the_story(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_shipped_model(tiny_run)
    run = app_home.install_model(tiny_run)
    scripted_red_boat(monkeypatch)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await write_story(pilot, app)
        picker = app.screen.query_one("#model", Select)
        picker.focus()
        await pilot.press("enter")  # open the list
        await pilot.pause()
        overlay = picker.query_one(SelectOverlay)
        labels = [str(overlay.get_option_at_index(i).prompt)
                  for i in range(overlay.option_count)]
        assert labels == ["shipped model", "tiny (final)"]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: "ready · tiny" in status_text(app), what="other model")
        assert picker.value == str(run)
        assert app.screen.query_one(StoryView).text == STORY  # still there, still savable
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, PromptDialog)


async def test_notices_and_help_show_text_as_written(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")  # the list has the focus (ctrl+c copies in a text field)
        await pilot.pause()
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert "Press ctrl+q to quit the app." in notifications(app)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(s.render()) for s in app.screen.query("Static"))
        assert 'preferences.toml: [keymap] then id = "key"' in text
        app.screen.dismiss(None)
        await pilot.press("f2")
        await pilot.pause()
        line = app.screen.query_one(GenerationStatus)
        line.show("done", 1, 12.0)
        assert str(line.render()) == "done · 1 token · 12/s"
        line.show("done", 2)
        assert str(line.render()) == "done · 2 tokens"


async def test_a_theme_chosen_in_the_palette_is_remembered_and_bedtime_is_not_offered(
        app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        app.action_change_theme()
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.pause(0.3)
        offered = app.screen.query_one(CommandList)
        names = [str(offered.get_option_at_index(i).prompt) for i in range(offered.option_count)]
        assert "textual-light" in names and BEDTIME_THEME.name not in names
        await pilot.press(*"nord")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "nord", what="theme chosen")
    assert 'theme = "nord"' in app_home.prefs.read_text()
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "nord"


def test_a_story_flag_without_inline_says_it_needs_it() -> None:
    result = run_cli("-m", "tui", "--theme", "magic")
    assert result.returncode == 2
    assert "--theme needs --inline" in result.stderr
    result = run_cli("-m", "tui", "--theme", "magic", "--seed", "3")
    assert "--theme, --seed need --inline" in result.stderr


async def test_a_wide_terminal_shows_a_long_model_name_in_full(app_home: AppHome,
                                                               tiny_run: Path) -> None:
    app_home.install_model(tiny_run, name="run-20261202-143000")
    app = GrainApp()
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        picker = app.screen.query_one("#model", Select)
        label = str(picker.query_one("SelectCurrent #label").render())
        assert label == "run-20261202-143000 (final)"
        assert app.screen.query_one("#settings-pane").outer_size.width >= 56


async def test_an_open_list_has_a_frame(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#theme", Select).focus()
        await pilot.press("enter")
        await pilot.pause()
        overlay = app.screen.query_one("#theme", Select).query_one(SelectOverlay)
        assert overlay.display and overlay.styles.border_left[0] == "round"


async def test_notices_are_short_and_stay_clear_of_the_status_line(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        app.clear_notifications()
        app.notify("A warning.", severity="warning", timeout=20)
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)), what="the notice")
        notice = app.screen.query_one(Toast)
        assert notice.region.y <= 3  # at the top, under the navigation line
        await pilot.pause(6.5)
        assert not app.screen.query(Toast), "a warning stayed longer than 6 s"


async def test_export_remembers_the_format_and_stories_keep_a_true_model_label(
        app_home: AppHome, tmp_path: Path) -> None:
    save_the_red_boat(model="run-7 (best so far)")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        meta = str(app.screen.query_one("#story-meta").render())
        assert "run-7 (during training)" in meta and "best so far" not in meta
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen.query_one("#export-format", Select).value == "markdown"
        app.screen.query_one("#export-format", Select).value = "text"
        app.screen.query_one("#export-folder", Input).value = str(tmp_path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: list(tmp_path.glob("*.txt")), what="exported")
        assert "Model: run-7 (during training)" in next(tmp_path.glob("*.txt")).read_text()
    app = GrainApp()  # the next time, even after a restart: plain text again
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen.query_one("#export-format", Select).value == "text"
