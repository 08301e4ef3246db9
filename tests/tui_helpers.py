"""Helpers shared by the TUI tests: isolated app folders, a model in place, waiting."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input

from tui import paths
from tui.runs import list_runs


@dataclass
class AppHome:
    """The folders one test's app uses (and where it looks for the shipped model)."""

    config: Path
    data: Path
    shipped: Path

    @property
    def prefs(self) -> Path:
        """The preferences file."""
        return paths.prefs_file()

    @property
    def runs(self) -> Path:
        """The training runs folder."""
        return paths.runs_dir()

    def install_shipped_model(self, source: Path) -> None:
        """Make a trained model the "shipped" one."""
        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            shutil.copy(source / name, self.shipped / name)

    def install_model(self, source: Path, name: str = "tiny") -> Path:
        """Copy a trained run folder into the runs folder, where the model picker finds it."""
        target = self.runs / name
        shutil.copytree(source, target)
        return target


def isolated_app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHome]:
    """Fresh config and data folders for the app (XDG variables, honoured by platformdirs);
    for an ``app_home`` fixture. The shipped model is hidden (an empty folder) unless the test
    installs one. Any trainer still running at the end is killed."""
    home = AppHome(tmp_path / "config", tmp_path / "data", tmp_path / "shipped")
    home.shipped.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home.config))
    monkeypatch.setenv("XDG_DATA_HOME", str(home.data))
    monkeypatch.setattr("tui.models.default_model_dir", lambda: home.shipped)
    yield home
    for run in list_runs(paths.runs_dir()):  # never leave a trainer behind
        pid = run.pid()
        if pid is not None and run.is_running():
            os.kill(pid, signal.SIGKILL)


async def wait_for(pilot: Pilot[object], condition: Callable[[], bool], timeout: float = 30.0,
                   what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


async def replace_text(pilot: Pilot[object], field_id: str, text: str,
                       paste: bool = False) -> None:
    """Focus a field, clear it (ctrl+a, ctrl+k) and type ``text``, or paste it as a terminal
    would (bracketed paste) when it is long, like a path."""
    field = pilot.app.screen.query_one(f"#{field_id}", Input)
    field.focus()
    await pilot.press("ctrl+a", "ctrl+k")
    if paste:
        field.post_message(events.Paste(text))
        await pilot.pause()
    else:
        await pilot.press(*text)


def notifications(app: object) -> list[str]:
    """The messages of the notifications the app is showing."""
    return [n.message for n in app._notifications]  # type: ignore[attr-defined]
