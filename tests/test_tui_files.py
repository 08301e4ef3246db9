"""The TUI's non-visual parts: preferences, library, export, metrics following, runs, models."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tui_helpers import AppHome, isolated_app_home

from saga_model import SagaError
from tui.export import export_story, render, safe_file_stem
from tui.library import SCHEMA_VERSION, LibraryError, SavedStory, StoryLibrary, suggest_title
from tui.metrics import MetricsFollower, RunProgress
from tui.models import ModelCache, discover_models, pick_model
from tui.prefs import Preferences, load_preferences, save_preferences
from tui.runs import RunError, TrainingRun, parse_extra_flags, trainer_alive, validate_run_name


@pytest.fixture()
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppHome]:
    """Private config and data folders."""
    yield from isolated_app_home(tmp_path, monkeypatch)


# -- preferences ------------------------------------------------------------------------------

def test_preferences_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "prefs.toml"
    prefs = Preferences(theme="textual-light", model="/models/x")
    prefs.story.characters, prefs.story.seed, prefs.training.steps = "Zara", 7, 300
    save_preferences(path, prefs)
    loaded = load_preferences(path)
    assert loaded.warning is None and loaded.prefs == prefs
    prefs.story.seed = None  # "random" is simply left out of the file
    save_preferences(path, prefs)
    assert load_preferences(path).prefs.story.seed is None


def test_preferences_with_wrong_types_keep_the_good_values(tmp_path: Path) -> None:
    path = tmp_path / "prefs.toml"
    path.write_text('theme = 3\n[story]\ntemperature = 1\ntop_p = "high"\nseed = 4\n'
                    "[training]\nsteps = true\n")
    loaded = load_preferences(path)
    assert loaded.prefs.story.temperature == 1.0 and loaded.prefs.story.seed == 4
    assert loaded.prefs.theme == Preferences().theme and loaded.prefs.training.steps == 2000
    assert loaded.warning is not None
    for name in ("theme", "story.top_p", "training.steps"):
        assert name in loaded.warning


def test_unreadable_preferences_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "prefs.toml"
    for attempt in range(2):
        path.write_bytes(b"\xff\xfe not toml")
        loaded = load_preferences(path)
        assert loaded.prefs == Preferences() and "could not read" in loaded.warning.lower()
        assert not path.exists()
        assert len(list(tmp_path.glob("prefs.toml.corrupt-*"))) == attempt + 1
    assert load_preferences(tmp_path / "missing.toml").warning is None


# -- library ----------------------------------------------------------------------------------

def story(title: str, day: int = 1, **fields: str) -> SavedStory:
    """A story saved on 2025-03-<day>."""
    return SavedStory(title=title, text=f"{title} text", created_at=datetime(2025, 3, day,
                                                                             tzinfo=UTC),
                      **fields)


def test_library_schema_wal_and_search(tmp_path: Path) -> None:
    library = StoryLibrary(tmp_path / "lib.sqlite3")
    first = library.add(story("100% fun", 1, characters="Zara, Milo"))
    library.add(story("A_b", 2, theme="courage", sampling={"seed": 3}))
    library.add(story("Plain", 3))
    assert [s.title for s in library.search()] == ["Plain", "A_b", "100% fun"]
    assert [s.title for s in library.search("100%")] == ["100% fun"]
    assert [s.title for s in library.search("a_")] == ["A_b"]  # "_" is not a wildcard
    assert [s.title for s in library.search("zara fun")] == ["100% fun"]  # every word
    assert [s.title for s in library.search("COURAGE")] == ["A_b"]
    assert library.search("'; DROP TABLE stories; --") == []
    saved = library.get(first)
    assert saved is not None and saved.characters == "Zara, Milo"
    assert saved.created_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert library.delete(first) and not library.delete(first) and library.get(first) is None
    library.close()
    conn = sqlite3.connect(tmp_path / "lib.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_library_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LibraryError, match="newer Grain de Saga"):
        StoryLibrary(path).search()


def test_locked_library_is_an_error_then_works_again(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite3"
    library = StoryLibrary(path, timeout=0.1)
    library.add(story("Before"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    with pytest.raises(LibraryError, match="locked"):
        library.add(story("During"))
    assert [s.title for s in library.search()] == ["Before"]  # reading still works (WAL)
    other.execute("ROLLBACK")
    other.close()
    library.add(story("After", 2))
    assert [s.title for s in library.search()] == ["After", "Before"]


def test_suggested_titles() -> None:
    assert suggest_title("  Once upon a time, a cat. Then more.") == "Once upon a time, a cat"
    long = suggest_title("word " * 40)
    assert long.endswith("…") and len(long) <= 49
    assert suggest_title("...") == "Untitled story"


# -- export -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("title", "stem"), [
    ("../../etc/passwd", "etc-passwd"),
    ("/absolute/path", "absolute-path"),
    (".hidden", "hidden"),
    ("Zoë & the Émeu!", "zoe-the-emeu"),
    ("", "story"),
    ("...", "story"),
    ("a" * 100, "a" * 60),
])
def test_export_file_names_stay_in_the_folder(title: str, stem: str) -> None:
    assert safe_file_stem(title) == stem


def test_export_markdown_and_text(tmp_path: Path) -> None:
    saved = story("Night owl", theme="nature", characters="Ama")
    first = export_story(saved, tmp_path, "markdown")
    second = export_story(saved, tmp_path, "markdown")
    text = export_story(saved, tmp_path, "text")
    assert [first.name, second.name, text.name] == ["night-owl.md", "night-owl-2.md",
                                                    "night-owl.txt"]
    assert first.read_text() == render(saved, "markdown")
    assert first.read_text().startswith("# Night owl\n\n- Settings: nature · Ama\n")
    assert text.read_text().startswith("Night owl\n=========\n\nNight owl text\n")
    assert first.stat().st_mode & 0o044  # readable like any file the user writes
    with pytest.raises(ValueError):
        render(saved, "pdf")


# -- metrics ----------------------------------------------------------------------------------

def test_follower_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower(path)
    assert follower.read_new() == []  # not there yet
    path.write_text('{"event": "start"}\n{"event": "st')
    assert follower.read_new() == [{"event": "start"}]
    with open(path, "a") as handle:
        handle.write('ep", "step": 10}\nnot json\n[1]\n')
    assert follower.read_new() == [{"event": "step", "step": 10}]
    assert follower.read_new() == []
    path.unlink()
    path.write_text('{"event": "end"}\n')  # a new file from the start
    assert follower.read_new() == [{"event": "end"}]


def step(n: int, loss: float) -> dict[str, object]:
    """A step event as the trainer writes it."""
    return {"event": "step", "step": n, "total_steps": 100, "loss": loss, "lr": 1e-3,
            "tokens_per_sec": 1000.0, "elapsed": n / 10}


def test_progress_folds_events_and_rewinds_on_resume() -> None:
    progress = RunProgress()
    start = {"event": "start", "parameters": 1000, "train_config": {"steps": 100},
             "start_step": 0}
    assert progress.apply_all([start, step(10, 5.0), step(20, 4.0),
                               {"event": "eval", "step": 20, "val_loss": 4.5, "sample": "Hi"},
                               step(30, 3.5), {"event": "step"}])  # the last one is malformed
    assert progress.steps == [10, 20, 30] and progress.best_val_loss == 4.5
    assert progress.sample == "Hi" and progress.sample_step == 20
    assert progress.eta_seconds == pytest.approx(7.0)
    progress.apply({"event": "end", "step": 30, "elapsed": 3.0, "stop_reason": "stopped"})
    assert progress.stop_reason == "stopped" and progress.eta_seconds is None
    # Resumed from a checkpoint at step 20 (the process was killed after step 30).
    progress.apply({**start, "start_step": 20})
    assert progress.steps == [10, 20] and progress.stop_reason is None
    progress.apply(step(30, 3.4))
    assert progress.losses == [5.0, 4.0, 3.4]


# -- runs -------------------------------------------------------------------------------------

def test_run_names_and_extra_flags() -> None:
    assert validate_run_name(" my-run_2.a ") == "my-run_2.a"
    for bad in ("", "../x", ".hidden", "a/b", "a" * 65, "x..y"):
        with pytest.raises(RunError):
            validate_run_name(bad)
    assert parse_extra_flags("--lr 1e-3 --seed '4'") == ["--lr", "1e-3", "--seed", "4"]
    for bad in ("--steps 3", "--output_dir=/x", "--lr 'unclosed"):
        with pytest.raises(RunError):
            parse_extra_flags(bad)


def test_a_pid_is_only_a_trainer_if_it_runs_the_trainer(tmp_path: Path) -> None:
    assert not trainer_alive(os.getpid())  # alive, but pytest is not the trainer
    sleeper = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); "
                                "import time; time.sleep(30)", "saga_model.cli.train"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "up\n"
        assert trainer_alive(sleeper.pid)
        run = TrainingRun(tmp_path / "run")
        run.folder.mkdir()
        (run.folder / "pid").write_text(f"{sleeper.pid}\n")
        assert run.is_running()
    finally:
        sleeper.kill()
        sleeper.wait()
        sleeper.stdout.close()
    assert not trainer_alive(sleeper.pid)
    assert not TrainingRun(tmp_path / "run").is_running()


def test_run_failure_is_read_from_its_log(tmp_path: Path) -> None:
    run = TrainingRun(tmp_path)
    (tmp_path / "train.log").write_text("$ python -m saga_model.cli.train\n"
                                        "grain-train: error: no stories found in x\n\n")
    assert run.failure() == "grain-train: error: no stories found in x"
    (tmp_path / "train.log").write_text("$ python -m saga_model.cli.train\ndone\n")
    assert run.failure() is None
    with pytest.raises(RunError, match="no checkpoint"):
        run.resume(10, [])


# -- models -----------------------------------------------------------------------------------

def test_models_are_discovered_per_run(app_home: AppHome, tiny_run: Path) -> None:
    runs = app_home.runs
    assert discover_models(runs) == []
    final = app_home.install_model(tiny_run, "final")
    partial = runs / "partial"
    (partial / "best").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        (partial / "best" / name).write_bytes((final / name).read_bytes())
    (runs / "empty").mkdir()
    os.utime(final, (1, 1))  # "final" is the older run
    choices = discover_models(runs)
    assert [(c.label, c.path) for c in choices] == [("partial (best so far)", partial / "best"),
                                                    ("final (final)", final)]
    assert pick_model(choices, str(final)) == (choices, final)
    assert pick_model(choices, "")[1] == partial / "best"
    extended, chosen = pick_model(choices, str(tiny_run))  # a folder from elsewhere
    assert chosen == tiny_run and extended[-1].label == "output (folder)"
    assert pick_model(choices, str(runs / "empty"))[1] == partial / "best"


def test_the_shipped_model_comes_first_and_is_chosen_by_default(app_home: AppHome,
                                                                 tiny_run: Path) -> None:
    app_home.install_model(tiny_run, "mine")
    app_home.install_shipped_model(tiny_run)
    choices = discover_models(app_home.runs)
    assert [c.label for c in choices] == ["shipped model", "mine (final)"]
    assert pick_model(choices, "")[1] == app_home.shipped
    assert pick_model(choices, str(app_home.runs / "mine"))[1] == app_home.runs / "mine"


def test_model_cache_loads_once_and_reports_errors(tiny_run: Path, tmp_path: Path) -> None:
    cache = ModelCache()
    first = cache.get(tiny_run)
    assert cache.get(tiny_run) is first
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(SagaError):
        cache.get(tmp_path)
