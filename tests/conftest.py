"""Shared fixtures: the small story corpus and a tiny model trained once per session."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tui_helpers import AppHome

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def split_texts(tokenizer: Any, split: Any) -> list[str]:
    """The text of each example of a prepared split, without its control tokens (a
    ``StoryTokenizer`` decodes those to nothing)."""
    bounds = [int(start) for start in split.starts] + [split.n_tokens]
    return [tokenizer.decode(split.tokens[a:b].tolist()) for a, b in itertools.pairwise(bounds)]


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep caches, preferences and libraries of the test run out of the user's home."""
    base = tmp_path_factory.mktemp("grain-home")
    os.environ["GRAIN_CACHE_DIR"] = str(base / "cache")
    os.environ["XDG_CACHE_HOME"] = str(base / "xdg-cache")
    os.environ["XDG_CONFIG_HOME"] = str(base / "xdg-config")
    os.environ["XDG_DATA_HOME"] = str(base / "xdg-data")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Folder with train.txt (150 stories) and valid.txt (15 stories)."""
    return FIXTURES / "stories"


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command-line entry point in a fresh Python process, as a user would."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def peak_rss_mb(*args: str, until: str | None = None, env: dict[str, str] | None = None,
                timeout: float = 300) -> tuple[float, str]:
    """(peak resident memory in MB, stderr) of ``python args`` run in a fresh process; with
    ``until``, the process is killed once a line of its stderr contains ``until``.

    The peak is the child's own address space's high-water mark (``VmHWM``), polled while it
    runs: ``wait4``'s ``ru_maxrss`` would also count the test process's memory, which the
    child's address space held until its ``exec``.
    """
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    peak_kb = [0]
    running = threading.Event()
    running.set()

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while running.is_set():
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            except (OSError, ValueError):
                return
            if "VmHWM" in fields:
                peak_kb[0] = max(peak_kb[0], int(fields["VmHWM"].split()[0]))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if until is not None and until in line:
                break
    finally:
        running.clear()
        watcher.join()
        timer.cancel()
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return peak_kb[0] / 1024, "".join(lines)


def one_line_story(n_chars: int) -> str:
    """A story of about ``n_chars`` characters on one line: the fixture stories' words."""
    words = (FIXTURES / "stories" / "train.txt").read_text().replace("<|endoftext|>", " ").split()
    text = " ".join(itertools.islice(itertools.cycle(words), n_chars // 4))
    return text[:n_chars].rsplit(" ", 1)[0]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """Output folder of a tiny model trained through the seed's train command."""
    out = tmp_path_factory.mktemp("tiny-run") / "output"
    result = run_cli("scripts/train.py", "--data_dir", str(corpus_dir), "--output_dir", str(out),
                     "--config", "tiny", "--steps", "80", "--batch_size", "8",
                     "--eval_every", "40", "--save_every", "40", "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture()
def tiny_model_dir(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model folder that a test may modify."""
    target = tmp_path / "model"
    shutil.copytree(tiny_run, target)
    return target


@pytest.fixture()
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHome]:
    """Private config and data folders for one test's app (any trainer left running is
    killed afterwards); see ``tui_helpers.isolated_app_home``."""
    from tui_helpers import isolated_app_home  # imports Textual: only for the TUI tests

    yield from isolated_app_home(tmp_path, monkeypatch)
