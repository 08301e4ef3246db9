"""Snapshots of the main screens at 80x24 and 120x40 (update with --snapshot-update).

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

SIZES = [(80, 24), (120, 40)]


def open_screen(key: str | None) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Switch screens, then stop the cursors blinking (a blink would make shots differ)."""

    async def run_before(pilot: Pilot[None]) -> None:
        if key:
            await pilot.press(key)
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
    assert snap_compare(GrainApp(), run_before=open_screen(None), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_training_screen_without_runs(app_home: AppHome, snap_compare, size) -> None:
    assert snap_compare(GrainApp(), run_before=open_screen("f3"), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_library_screen(app_home: AppHome, snap_compare, size) -> None:
    library = StoryLibrary(library_file())
    library.add(SavedStory(
        title="Zara and the moon kite", theme="adventure", tone="cheerful", genre="fantasy",
        characters="Zara, Milo", model="bedtime (final)",
        text="Once upon a time, Zara and Milo built a kite as big as a door. One windy night "
             "it pulled them up, up, up, until they could touch the moon. \"It is cold,\" "
             "said Milo. Zara laughed and they flew home for cocoa.",
        created_at=datetime(2025, 3, 2, 19, 30, tzinfo=UTC)))
    library.add(SavedStory(
        title="The sharing tree", theme="sharing", text="A tree had one apple left...",
        created_at=datetime(2025, 3, 1, 8, 0, tzinfo=UTC)))
    library.close()
    assert snap_compare(GrainApp(), run_before=open_screen("f4"), terminal_size=size)
