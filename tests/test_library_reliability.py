"""The story library when things go wrong: several programs at once, folders that cannot be
written. Real SQLite files, real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from tui_helpers import (
    AppHome,
    notifications,
    story_text,
    tell_a_story,
    wait_for,
)

from tui.app import GrainApp
from tui.library import LibraryError, SavedStory, StoryLibrary, _enable_wal, _explain
from tui.screens.library import LibraryScreen

NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]

#: Waits for a common start time, opens the (new) library and saves one story.
SAVE_ONE = """
import sys, time
from pathlib import Path
from tui.library import SavedStory, StoryLibrary
path, start, name = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start - time.time()))
StoryLibrary(path).add(SavedStory(name, "A story saved at the same moment."))
"""


def test_a_new_library_opened_by_several_programs_at_once(tmp_path: Path) -> None:
    """Each round, four processes create the same brand-new library at the same instant."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "library.sqlite3"
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", SAVE_ONE, str(path), str(start),
                                   f"story {i}"], env=env, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        titles = sorted(hit.story.title for hit in StoryLibrary(path).search())
        assert titles == [f"story {i}" for i in range(4)]


class LockedAtFirst:
    """A connection whose journal-mode switch answers "locked" (as SQLite does, at once and
    without its busy handler, while another program is creating the same library)."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.statements: list[str] = []

    def execute(self, statement: str) -> None:
        self.statements.append(statement)
        if self.refusals:
            self.refusals -= 1
            raise sqlite3.OperationalError("database is locked")


def test_switching_to_write_ahead_logging_waits_for_the_other_program() -> None:
    conn = LockedAtFirst(refusals=3)
    _enable_wal(conn)  # type: ignore[arg-type]
    assert conn.statements == ["PRAGMA journal_mode=WAL"] * 4


def as_restricted_user() -> list[str]:
    """Run a command so that file permissions apply (as root: without the override)."""
    return NO_OVERRIDE if os.geteuid() == 0 else []


def test_a_library_in_a_read_only_folder_is_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    library = StoryLibrary(folder / "library.sqlite3")
    library.add(SavedStory("Kept", "Zara kept the kite."))
    library.close()
    folder.chmod(0o555)
    script = """
import sys
from pathlib import Path
from tui.library import LibraryError, SavedStory, StoryLibrary, _enable_wal, _explain
library = StoryLibrary(Path(sys.argv[1]))
print([hit.story.title for hit in library.search("kite")])
print(library.take_notice())
try:
    library.add(SavedStory("New", "x"))
except LibraryError as exc:
    print(exc)
"""
    result = subprocess.run([*as_restricted_user(), sys.executable, "-c", script,
                             str(folder / "library.sqlite3")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    found, notice, refused = result.stdout.splitlines()
    assert found == "['Kept']"
    assert "read-only" in notice and "read-only" in refused
    assert sorted(os.listdir(folder)) == ["library.sqlite3"]


def test_a_library_folder_that_cannot_be_created_is_a_library_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    library = StoryLibrary(tmp_path / "file" / "data" / "library.sqlite3")
    with pytest.raises(LibraryError, match="cannot be created"):
        library.add(SavedStory("Lost?", "No: the caller keeps it."))
    with pytest.raises(LibraryError, match="cannot be created"):
        library.search()


def test_a_full_disk_is_explained() -> None:
    error = _explain(sqlite3.OperationalError("database or disk is full"), Path("lib.sqlite3"))
    assert str(error) == "The disk is full: the story library cannot be written (lib.sqlite3)."


@pytest.mark.asyncio
async def test_story_stays_when_the_data_folder_cannot_be_created(
        app_home: AppHome, tiny_run: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving fails with a clear message, the story stays on screen, the library screen says
    why, and the export dialog offers a folder that works."""
    app_home.data.write_text("a file where the data folder should be")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    app_home.install_shipped_model(tiny_run)
    app = GrainApp()
    async with app.run_test(size=(80, 24)) as pilot:
        written = await tell_a_story(pilot, app, max_tokens="40")
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert any("cannot be created" in m and "export" in m for m in notifications(app))
        assert story_text(app).strip() == written
        await pilot.press("f4")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, LibraryScreen)
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(Path(tmp_path / "home").iterdir()), what="export")
    exported = list((tmp_path / "home").iterdir())
    assert len(exported) == 1 and written[:30] in exported[0].read_text()
