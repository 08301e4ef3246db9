"""Snapshots of the main screens at 80x24 and 120x40, and of the newer views (bedtime mode,
a library search, the branch and versions dialogs) at 80x24 (update with --snapshot-update).

Everything shown is made deterministic: no model (the first-run Story screen), no training
run, and a library with fixed stories and dates in UTC.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tui_helpers import AppHome, isolated_app_home

from tui.app import GrainApp
from tui.library import SavedStory, StoryLibrary
from tui.paths import library_file
from tui.screens.branch import BranchDialog

SIZES = [(80, 24), (120, 40)]


def open_screen(*keys: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Press keys (switch screens, type a search...), then stop the cursors blinking (a blink
    would make shots differ)."""

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press(*keys)
        await pilot.pause()
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False

    return run_before


@pytest.fixture()
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHome]:
    """Private folders, and UTC so that dates look the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield from isolated_app_home(tmp_path, monkeypatch)
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_story_screen_first_run(app_home: AppHome, snap_compare, size) -> None:
    assert snap_compare(GrainApp(), run_before=open_screen(), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_training_screen_without_runs(app_home: AppHome, snap_compare, size) -> None:
    assert snap_compare(GrainApp(), run_before=open_screen("f3"), terminal_size=size)


KITE = ("Once upon a time, Zara and Milo built a kite as big as a door. One windy night it "
        "pulled them up, up, up, until they could touch the moon. \"It is cold,\" said Milo. "
        "Zara laughed and they flew home for cocoa.")


def fill_library() -> None:
    """Two stories, and a continued version of the first."""
    library = StoryLibrary(library_file())
    first = library.add(SavedStory(
        title="Zara and the moon kite", theme="adventure", tone="cheerful", genre="fantasy",
        characters="Zara, Milo", model="bedtime (final)", text=KITE,
        created_at=datetime(2025, 3, 2, 19, 30, tzinfo=UTC)))
    library.add(SavedStory(
        title="The sharing tree", theme="sharing", text="A tree had one apple left...",
        created_at=datetime(2025, 3, 1, 8, 0, tzinfo=UTC)))
    library.add(SavedStory(
        title="Zara and the moon kite (continued)", theme="adventure", tone="cheerful",
        genre="fantasy", characters="Zara, Milo", model="bedtime (final)", parent_id=first,
        text=KITE + " The next morning the kite was gone, and a note said: back at noon.",
        created_at=datetime(2025, 3, 3, 7, 0, tzinfo=UTC)))
    library.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_library_screen(app_home: AppHome, snap_compare, size) -> None:
    fill_library()
    assert snap_compare(GrainApp(), run_before=open_screen("f4"), terminal_size=size)


def test_library_search_highlights_matches(app_home: AppHome, snap_compare) -> None:
    fill_library()
    assert snap_compare(GrainApp(), run_before=open_screen("f4", "ctrl+f", *"moon"),
                        terminal_size=SIZES[0])


def test_versions_dialog(app_home: AppHome, snap_compare) -> None:
    fill_library()
    assert snap_compare(GrainApp(), run_before=open_screen("f4", "v"), terminal_size=SIZES[0])


def test_branch_dialog(app_home: AppHome, snap_compare) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(BranchDialog("Zara and the moon kite", KITE))
        await open_screen()(pilot)

    assert snap_compare(GrainApp(), run_before=run_before, terminal_size=SIZES[0])


def test_story_screen_in_bedtime_mode(app_home: AppHome, snap_compare) -> None:
    assert snap_compare(GrainApp(), run_before=open_screen("f5"), terminal_size=SIZES[0])
