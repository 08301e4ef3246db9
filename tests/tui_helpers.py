"""Helpers shared by the TUI tests: isolated app folders, a model in place, waiting."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input

import saga_model
from saga_model import StoryPiece
from tui import paths
from tui.runs import list_runs
from tui.widgets.generation_status import GenerationStatus
from tui.widgets.story_view import StoryView


@dataclass
class AppHome:
    """The folders one test's app uses, where it looks for the shipped model, and a folder
    first on ``PATH`` for fake programs (speech engine, clipboard tools)."""

    config: Path
    data: Path
    shipped: Path
    bin: Path

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

    def fake_program(self, name: str, delay: float = 0.0, fail: str = "") -> Path:
        """Put a program called ``name`` on ``PATH`` that logs each call and returns the log.

        Each call appends one JSON line ``{"args": [...], "stdin": "..."}`` to the log, then
        sleeps ``delay`` seconds; with ``-o``/``-w FILE`` (an audio export) it writes FILE;
        with ``fail`` it prints that on stderr and exits 1.
        """
        log = self.bin / f"{name}.log"
        script = self.bin / name
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, sys, time\n"
            "args = sys.argv[1:]\n"
            "entry = {'args': args, 'stdin': sys.stdin.read()}\n"
            f"with open({str(log)!r}, 'a') as log:\n"
            "    log.write(json.dumps(entry) + '\\n')\n"
            f"if {fail!r}:\n"
            f"    sys.exit({fail!r})\n"
            "for flag in ('-o', '-w'):\n"
            "    if flag in args:\n"
            "        open(args[args.index(flag) + 1], 'wb').write(b'FORM....AIFF')\n"
            f"time.sleep({delay!r})\n")
        script.chmod(0o755)
        return log


#: What tells the app where it runs (SSH, which terminal, which display).
CLIPBOARD_ENV = ("SSH_TTY", "SSH_CONNECTION", "SSH_CLIENT", "TERM_PROGRAM", "TMUX", "DISPLAY",
                 "WAYLAND_DISPLAY")


def isolated_app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHome]:
    """Fresh config and data folders for the app (XDG variables, honoured by platformdirs);
    for an ``app_home`` fixture. The shipped model is hidden (an empty folder) unless the test
    installs one; ``home.bin`` comes first on ``PATH`` (for fake programs) and the variables
    that say where the app runs (SSH, terminal, display) are cleared. Any trainer still
    running at the end is killed."""
    home = AppHome(tmp_path / "config", tmp_path / "data", tmp_path / "shipped",
                   tmp_path / "bin")
    home.shipped.mkdir()
    home.bin.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home.config))
    monkeypatch.setenv("XDG_DATA_HOME", str(home.data))
    monkeypatch.setenv("PATH", f"{home.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in CLIPBOARD_ENV:  # no test copies to the real clipboard or guesses it is remote
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("saga_model.shipped_model", lambda: home.shipped if (
        home.shipped / "model.safetensors").is_file() else None)
    record_notifications(monkeypatch)
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


_NOTIFIED: weakref.WeakKeyDictionary[App[Any], list[str]] = weakref.WeakKeyDictionary()


def record_notifications(monkeypatch: pytest.MonkeyPatch) -> None:
    """Note the message of every notification an app shows (see :func:`notifications`)."""
    show = App.notify

    def notify(app: App[Any], message: str, **options: Any) -> None:
        _NOTIFIED.setdefault(app, []).append(message)
        show(app, message, **options)

    monkeypatch.setattr(App, "notify", notify)


def notifications(app: App[Any]) -> list[str]:
    """The messages of the notifications the app has shown, oldest first (recorded for the
    apps of tests that use ``app_home``)."""
    return _NOTIFIED.get(app, [])


def story_view(app: App[Any]) -> StoryView:
    """The Story screen's story pane."""
    return app.screen.query_one("#story-view", StoryView)


def story_text(app: App[Any]) -> str:
    """What the story pane shows."""
    return story_view(app).text


def status_text(app: App[Any]) -> str:
    """The Story screen's status line."""
    return str(app.screen.query_one(GenerationStatus).render())


def scripted_story(monkeypatch: pytest.MonkeyPatch, pieces: list[str], delay: float = 0.0,
                   first_delay: float | None = None) -> None:
    """The model "writes" exactly these pieces (the real model still loads), one every
    ``delay`` seconds (the first after ``first_delay`` if given), after the request's opening
    (a continuation's story so far) as the real one does."""

    def stream(_model: Any, _tokenizer: Any, request: saga_model.StoryRequest,
               *args: Any) -> Iterator[StoryPiece]:
        if request.opening:
            yield StoryPiece(request.opening, 0, 0.0)
        for index, text in enumerate(pieces, start=1):
            wait = first_delay if index == 1 and first_delay is not None else delay
            if wait:
                time.sleep(wait)
            yield StoryPiece(text, index, 0.1, "end" if index == len(pieces) else None)

    monkeypatch.setattr(saga_model, "stream_story", stream)


class OneView(App[None]):
    """Just a story pane (run it at 30x10: the first lines that need a scrollbar re-wrap
    beside it)."""

    def compose(self) -> ComposeResult:
        yield StoryView(id="story-view")


@contextlib.asynccontextmanager
async def empty_story_pane() -> AsyncIterator[tuple[Pilot[None], StoryView]]:
    """A :class:`OneView` app running at 30x10, its pane emptied as for a new story."""
    app = OneView()
    async with app.run_test(size=(30, 10)) as pilot:
        story = app.query_one(StoryView)
        story.clear()
        yield pilot, story


async def tell_a_story(pilot: Pilot[object], app: App[Any], **fields: str) -> str:
    """Wait for the model, fill in these form fields (by id), write a story with ctrl+g and
    wait until it is finished; returns its text."""
    await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
    for field_id, text in fields.items():
        await replace_text(pilot, field_id, text)
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: "writing" not in status_text(app)
                   and "tokens" in status_text(app), what="story finished")
    return story_text(app).strip()
