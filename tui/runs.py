"""Training runs as separate processes that outlive the app.

A run is a folder under :func:`tui.paths.runs_dir`: the trainer (``python -m
saga_model.cli.train``) writes checkpoints, ``metrics.jsonl`` and the model there; the app
adds ``pid`` (the trainer's process id) and ``train.log`` (its output). The process runs in
its own session, so closing the terminal or losing SSH does not stop it, and a later
``grain-tui`` finds it again through ``pid``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from saga_model import CHECKPOINTS_DIR, METRICS_FILE, atomic_write_text

TRAINER_MODULE = "saga_model.cli.train"
PID_FILE = "pid"
LOG_FILE = "train.log"
RUN_FILE = "run.json"
SAMPLE_TOKENS = 120
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Flags the form sets itself; "extra flags" may not repeat them.
_FORM_FLAGS = ("--data_dir", "--output_dir", "--config", "--steps", "--resume", "--quiet",
               "--init_from")
#: Flags the "Teach it your stories" dialog sets itself (the trainer picks the steps).
TEACH_FLAGS = tuple(flag for flag in _FORM_FLAGS if flag != "--steps")


class RunError(Exception):
    """A run cannot be started or resumed; the message is meant for the user."""


def default_run_name() -> str:
    """A fresh run name from the current time, e.g. ``run-20250101-093000``."""
    return time.strftime("run-%Y%m%d-%H%M%S")


def validate_run_name(name: str) -> str:
    """The name if it is a safe folder name (letters, digits, ``.``, ``_``, ``-``)."""
    name = name.strip()
    if not _NAME_RE.match(name) or ".." in name:
        raise RunError(f"run name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
                       "(at most 64, not starting with a dot)")
    return name


def parse_extra_flags(text: str, set_by_form: tuple[str, ...] = _FORM_FLAGS) -> list[str]:
    """Extra ``grain-train`` flags typed by the user (shell quoting allowed), none of those
    the form sets itself (``set_by_form``)."""
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise RunError(f"extra flags: {exc}") from None
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in set_by_form:
            raise RunError(f"extra flags: {flag} is set by the form, remove it from the flags")
    return args


def _command_line(pid: int) -> str | None:
    """The command line of a live process, ``None`` if unknown or the process is a zombie."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if ") Z" in (proc / "stat").read_text():
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
    try:
        result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def trainer_alive(pid: int) -> bool:
    """Whether ``pid`` is a live trainer process (not another process that reused the id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to someone else
    command = _command_line(pid)
    return command is not None and TRAINER_MODULE in command


class TrainingRun:
    """One run folder, and the trainer process working in it (if any)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The run's name (its folder name)."""
        return self.folder.name

    @property
    def metrics_file(self) -> Path:
        """The trainer's event log."""
        return self.folder / METRICS_FILE

    @property
    def log_file(self) -> Path:
        """The trainer's console output."""
        return self.folder / LOG_FILE

    def pid(self) -> int | None:
        """The recorded trainer process id."""
        try:
            return int((self.folder / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def has_checkpoints(self) -> bool:
        """Whether the run can be resumed."""
        return any((self.folder / CHECKPOINTS_DIR).glob("step_*/state.json"))

    def is_running(self) -> bool:
        """Whether the trainer process of this run is alive."""
        if self._process is not None:
            return self._process.poll() is None
        pid = self.pid()
        return pid is not None and trainer_alive(pid)

    def start(self, data_dir: Path, preset: str, steps: int, extra: list[str]) -> None:
        """Start a new run in this (new or empty) folder."""
        self._check_new(data_dir)
        self._launch(["--data_dir", str(data_dir.resolve()), "--config", preset,
                      "--steps", str(steps), *extra])

    def teach(self, data_dir: Path, base: Path, extra: list[str]) -> None:
        """Start teaching the model ``base`` the stories of ``data_dir`` in this new folder
        (``grain-train --init_from``, with its settings for small story sets)."""
        self._check_new(data_dir)
        self._launch(["--data_dir", str(data_dir.resolve()), "--init_from", str(base), *extra])

    def is_teaching(self) -> bool:
        """Whether this run fine-tunes an existing model (its settings are the trainer's)."""
        try:
            return bool(json.loads((self.folder / RUN_FILE).read_text()).get("init_from"))
        except (OSError, ValueError, AttributeError):
            return False

    def _check_new(self, data_dir: Path) -> None:
        if self.has_checkpoints():
            raise RunError(f"a run named {self.name!r} already exists: resume it or choose "
                           "another name")
        if not data_dir.exists():
            raise RunError(f"data directory not found: {data_dir}")

    def resume(self, steps: int | None, extra: list[str]) -> None:
        """Continue the run from its newest checkpoint (up to ``steps`` in total if given)."""
        if not self.has_checkpoints():
            raise RunError(f"run {self.name!r} has no checkpoint to resume from")
        self._launch(["--resume", *(["--steps", str(steps)] if steps else []), *extra])

    def _launch(self, args: list[str]) -> None:
        if self.is_running():
            raise RunError(f"run {self.name!r} is already training")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", TRAINER_MODULE, "--output_dir", str(self.folder),
                   "--sample_tokens", str(SAMPLE_TOKENS), "--quiet", *args]
        with open(self.log_file, "wb") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        atomic_write_text(self.folder / PID_FILE, f"{self._process.pid}\n")

    def stop(self) -> bool:
        """Ask the trainer to save a checkpoint and exit; ``False`` if it was not running."""
        pid = self.pid()
        if pid is None or not self.is_running():
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def exit_code(self) -> int | None:
        """The trainer's exit code, when this app started it and it has exited."""
        return None if self._process is None else self._process.poll()

    def failure(self) -> str | None:
        """The trainer's error message, if its log ends with one."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            if line.strip() and not line.startswith("$ "):
                if "error" in line.lower() or self.exit_code() not in (None, 0):
                    return line.strip()
                return None
        return None


def list_runs(root: Path) -> list[TrainingRun]:
    """Every run folder under ``root``, most recently active first."""
    if not root.is_dir():
        return []

    def last_activity(folder: Path) -> float:
        stamps = [p.stat().st_mtime for p in (folder / METRICS_FILE, folder / PID_FILE, folder)
                  if p.exists()]
        return max(stamps)

    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [TrainingRun(p) for p in sorted(folders, key=last_activity, reverse=True)]
