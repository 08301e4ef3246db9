"""App-wide behaviour with real keys: preferences, theme, help, palette, small terminals,
and the Library screen (delete, export, a damaged library)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import DataTable
from tui_helpers import AppHome, notifications, replace_text, wait_for

from tui.app import GrainApp
from tui.library import SavedStory, StoryLibrary
from tui.paths import library_file
from tui.prefs import LIGHT_THEME
from tui.screens.confirm import ConfirmDialog
from tui.screens.help import HelpScreen
from tui.screens.library import LibraryScreen
from tui.screens.story import StoryScreen
from tui.screens.too_small import TooSmallScreen
from tui.widgets.story_view import StoryView

SIZE = (80, 24)



def add_stories(*titles: str) -> None:
    """Put stories in the library (oldest first)."""
    library = StoryLibrary(library_file())
    for day, title in enumerate(titles, start=1):
        library.add(SavedStory(title=title, text=f"{title}. Once upon a time, the end.",
                               theme="friendship", created_at=datetime(2025, 3, day,
                                                                       tzinfo=UTC)))
    library.close()


async def test_corrupt_preferences_are_backed_up_and_reported(app_home: AppHome) -> None:
    app_home.prefs.parent.mkdir(parents=True)
    app_home.prefs.write_text("theme = [unclosed\n")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("Could not read your preferences" in m for m in notifications(app))
        assert isinstance(app.screen, StoryScreen)  # started normally, from defaults
        await pilot.press("ctrl+t")  # a change is saved as a fresh, valid file
        await pilot.pause()
    backups = list(app_home.prefs.parent.glob("preferences.toml.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == "theme = [unclosed\n"
    assert tomllib.loads(app_home.prefs.read_text())["theme"] == LIGHT_THEME


async def test_theme_and_story_settings_are_remembered(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+t")
        await replace_text(pilot, "characters", "Zara")
        await pilot.press("ctrl+g")  # no model: not written, but the settings are kept
        await pilot.pause()
        assert app.theme == LIGHT_THEME
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == LIGHT_THEME
        assert app.screen.query_one("#characters").value == "Zara"


async def test_terminal_too_small_shows_a_notice_until_resized(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert "need 80x24, have 60x20" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(79, 30)
        await pilot.pause()
        assert "have 79x30" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert isinstance(app.screen, StoryScreen)


async def test_help_lists_the_keys_and_the_palette_runs_actions(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(s.render()) for s in app.screen.query("Static"))
        for expected in ("ctrl+g", "Write a story with these settings", "Start a new training",
                         "delete", "preferences.toml"):
            assert expected in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StoryScreen)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"library", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen), what="library")


async def test_library_delete_asks_first_and_export_writes_a_file(
        app_home: AppHome, tmp_path: Path) -> None:
    add_stories("The lost kite", "A ../../sneaky/title")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#story-table", DataTable)
        assert table.row_count == 2  # newest first
        assert "sneaky" in str(app.screen.query_one("#story-meta").render())

        await pilot.press("ctrl+o")
        await pilot.pause()
        await replace_text(pilot, "export-folder", str(tmp_path / "out"), paste=True)
        await pilot.press("enter")
        await pilot.pause()
        exported = list((tmp_path / "out").iterdir())
        assert [p.name for p in exported] == ["a-sneaky-title.md"]
        assert exported[0].read_text().startswith("# A ../../sneaky/title\n")

        table.focus()
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # the dialog starts on "Cancel"
        await pilot.pause()
        assert table.row_count == 2
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("left", "enter")
        await pilot.pause()
        assert table.row_count == 1
        assert [s.title for s in app.library.search()] == ["The lost kite"]


async def test_damaged_library_is_reported_and_left_untouched(app_home: AppHome) -> None:
    library_file().parent.mkdir(parents=True)
    library_file().write_bytes(b"this is not a database" * 100)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        assert any("damaged" in m for m in notifications(app))
        assert "damaged" in app.screen.query_one("#library-story", StoryView).shown.plain
        await pilot.press("ctrl+f", *"kite")  # searching fails again, quietly
        await pilot.pause()
        assert app.is_running
        assert sum("damaged" in m for m in notifications(app)) == 1
    assert library_file().read_bytes() == b"this is not a database" * 100
