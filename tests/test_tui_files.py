"""The TUI's non-visual parts: preferences, library (search, versions, upgrades), export,
metrics following, runs, models, speech, clipboard, keymap, bedtime pacing, command line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tui_helpers import AppHome

from saga_model import EvalMetrics, RunStart, StepMetrics, TrainSummary
from saga_model.paths import shipped_model
from tui.app import GrainApp
from tui.cli import main as cli_main
from tui.clipboard import copy_message, plan_copy
from tui.export import export_story, render, safe_file_stem
from tui.highlight import MARK_END, MARK_START, MATCH_STYLE, marked_content
from tui.keymap import check_keymap, valid_key
from tui.library import (
    MIGRATIONS,
    NO_FTS_NOTICE,
    SCHEMA_VERSION,
    Filters,
    Found,
    LibraryError,
    SavedStory,
    StoryLibrary,
    suggest_title,
)
from tui.metrics import RunProgress, RunState, run_state
from tui.models import discover_models, pick_model
from tui.prefs import Preferences, load_preferences, save_preferences
from tui.reveal import WordReveal
from tui.runs import RunError, TrainingRun, parse_extra_flags, trainer_alive, validate_run_name
from tui.session import job_from_saved
from tui.speech import (
    SentenceSplitter,
    Speaker,
    SpeechEngine,
    export_audio,
    find_engine,
    sentence_spans,
    split_sentences,
)

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


def titles(found: list[Found]) -> list[str]:
    """The titles of search results, in order."""
    return [hit.story.title for hit in found]


def test_library_schema_wal_search_and_filters(tmp_path: Path) -> None:
    library = StoryLibrary(tmp_path / "lib.sqlite3")
    first = library.add(story("100% fun", 1, characters="Zara, Milo"))
    library.add(story("A_b", 2, theme="courage", sampling={"seed": 3}))
    library.add(story("Plain", 3, characters="Mr Fox"))
    assert titles(library.search()) == ["Plain", "A_b", "100% fun"]
    assert titles(library.search("100%")) == ["100% fun"]
    assert titles(library.search("fun te")) == ["100% fun"]  # every word, as a prefix
    assert titles(library.search("", Filters(theme="courage"))) == ["A_b"]
    assert titles(library.search("", Filters(character="milo"))) == ["100% fun"]
    assert titles(library.search("", Filters(character="mr  fox"))) == ["Plain"]
    assert titles(library.search("", Filters(character="Mil"))) == []  # whole names only
    for hostile in ('"', 'AND(', "NEAR(x", "*", "title:", "'; DROP TABLE stories; --"):
        assert library.search(hostile) is not None  # FTS5 syntax typed by a user never raises
    assert library.search("'; DROP TABLE stories; --") == []
    assert len(library.search()) == 3
    saved = library.get(first)
    assert saved is not None and saved.characters == "Zara, Milo"
    assert saved.created_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert library.characters() == ["Milo", "Mr Fox", "Zara"]
    assert library.delete(first) and not library.delete(first) and library.get(first) is None
    library.close()
    conn = sqlite3.connect(tmp_path / "lib.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_full_text_search_ranks_and_marks_matches(tmp_path: Path) -> None:
    library = StoryLibrary(tmp_path / "lib.sqlite3")
    middle = " ".join(["The sea was calm and the sky was grey."] * 20 + [
        "Then Ama found a lighthouse full of sleeping owls."] + ["The waves came."] * 20)
    library.add(SavedStory(title="Sea story", text=middle))
    library.add(SavedStory(title="The lighthouse", text="A short tale."))
    library.add(SavedStory(title="[b]Owls[/b]", text="No match here."))
    found = library.search("LIGHTHOUSES")  # no match: whole words only, prefixes
    assert found == []
    found = library.search("lighthouse")
    assert titles(found) == ["The lighthouse", "Sea story"]  # a title match ranks first
    assert found[0].title == f"The {MARK_START}lighthouse{MARK_END}"
    sea = found[1]
    assert f"{MARK_START}lighthouse{MARK_END}" in sea.snippet and len(sea.snippet) < 120
    assert sea.text.count(MARK_START) == 1 and sea.text.replace(MARK_START, "").replace(
        MARK_END, "") == middle
    owls = library.search("owls")
    assert titles(owls) == ["[b]Owls[/b]", "Sea story"]
    shown = marked_content(owls[0].title)  # markup in a title stays text; only matches styled
    assert shown.plain == "[b]Owls[/b]"
    assert [(s.start, s.end, str(s.style)) for s in shown.spans] == [(3, 7, MATCH_STYLE)]


def test_search_without_fts5_falls_back_then_the_index_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lib.sqlite3"
    library = StoryLibrary(path)
    library.add(story("Before", 1))
    library.close()
    monkeypatch.setattr("tui.library.fts5_available", lambda conn: False)
    library = StoryLibrary(path)
    library.add(story("During the outage", 2))  # saving works without FTS5
    assert titles(library.search("outage")) == ["During the outage"]
    assert library.take_notice() == NO_FTS_NOTICE and library.take_notice() is None
    library.close()
    monkeypatch.undo()
    library = StoryLibrary(path)
    found = library.search("outage")  # the index caught up with the story saved meanwhile
    assert titles(found) == ["During the outage"] and MARK_START in found[0].title
    assert library.take_notice() is None


def write_v1_library(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """A library as the first version of grain-tui wrote it: schema 1, (title, text,
    sampling) rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    for title, text, sampling in rows:
        conn.execute("INSERT INTO stories (title, text, theme, characters, model, sampling, "
                     "created_at) VALUES (?, ?, 'courage', 'Zara', 'seed (final)', ?, ?)",
                     (title, text, sampling, "2025-03-01T08:00:00+00:00"))
    conn.close()


def test_a_version_1_library_is_upgraded_without_losing_stories(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite3"
    write_v1_library(path, [("Old kite", "Zara flew a kite over the hill.",
                             '{"temperature": 0.8, "top_p": 0.95, "max_tokens": 60, '
                             '"seed": 42}'),
                            ("Broken settings", "A dragon slept.", "not json")])
    library = StoryLibrary(path)
    old, broken = sorted((hit.story for hit in library.search()), key=lambda s: s.id or 0)
    assert (old.title, old.theme, old.characters, old.model) == ("Old kite", "courage", "Zara",
                                                                 "seed (final)")
    assert old.seed == 42 and old.sampling["max_tokens"] == 60 and old.parent_id is None
    assert broken.seed is None and broken.sampling == {}
    assert titles(library.search("kite")) == ["Old kite"]  # indexed during the upgrade
    options = job_from_saved(old, tmp_path, "seed").options  # told again as written then
    assert (options.seed, options.max_tokens, options.name_boost) == (42, 60, 0.0)
    library.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_a_failed_upgrade_leaves_the_library_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "lib.sqlite3"
    write_v1_library(path, [("Old kite", "Zara flew a kite.", "{}")])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE stories ADD COLUMN model_id TEXT")  # the upgrade's 4th step fails
    conn.close()
    with pytest.raises(LibraryError, match="duplicate column"):
        StoryLibrary(path).search()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = [row[1] for row in conn.execute("PRAGMA table_info(stories)")]
    assert "parent_id" not in columns and "seed" not in columns  # the first steps rolled back
    assert conn.execute("SELECT title FROM stories").fetchall() == [("Old kite",)]
    conn.close()


def test_versions_form_a_family_tree(tmp_path: Path) -> None:
    library = StoryLibrary(tmp_path / "lib.sqlite3")
    root = library.add(story("Root", 1))
    child = library.add(SavedStory("Child", "x", parent_id=root))
    grandchild = library.add(SavedStory("Grandchild", "x", parent_id=child))
    sibling = library.add(SavedStory("Sibling", "x", parent_id=root))
    library.add(story("Stranger", 2))
    tree = [(depth, s.title) for depth, s in library.family(grandchild)]
    assert tree == [(0, "Root"), (1, "Child"), (2, "Grandchild"), (1, "Sibling")]
    assert library.family(sibling) == library.family(root)
    library.delete(child)  # its version now hangs from the root
    assert [(d, s.title) for d, s in library.family(root)] == [(0, "Root"), (1, "Grandchild"),
                                                              (1, "Sibling")]


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
    assert titles(library.search()) == ["Before"]  # reading still works (WAL)
    other.execute("ROLLBACK")
    other.close()
    library.add(story("After", 2))
    assert titles(library.search()) == ["After", "Before"]


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

def step(n: int, loss: float) -> StepMetrics:
    """A step event as the trainer reports it."""
    return StepMetrics(step=n, total_steps=100, loss=loss, lr=1e-3, grad_norm=1.0,
                       tokens_per_sec=1000.0, tokens_seen=n * 100, elapsed=n / 10)


def end(n: int, reason: str) -> TrainSummary:
    """The last event of a run."""
    return TrainSummary(step=n, tokens_seen=n * 100, elapsed=n / 10, best_val_loss=None,
                        best_step=None, stop_reason=reason, output_dir="run")


def test_progress_folds_events_and_rewinds_on_resume() -> None:
    progress = RunProgress()
    start = RunStart({"parameters": 1000, "train_config": {"steps": 100}, "start_step": 0})
    assert progress.apply_all([start, step(10, 5.0), step(20, 4.0),
                               EvalMetrics(step=20, val_loss=4.5, val_bpb=1.0, is_best=True,
                                           sample="Hi"),
                               step(30, 3.5)])
    assert progress.steps == [10, 20, 30] and progress.best_val_loss == 4.5
    assert progress.sample == "Hi" and progress.sample_step == 20
    assert progress.eta_seconds == pytest.approx(7.0) == step(30, 3.5).remaining_seconds
    assert (progress.lr, progress.tokens_per_sec, progress.elapsed) == (1e-3, 1000.0, 3.0)
    progress.apply(end(30, "stopped"))
    assert progress.stop_reason == "stopped" and progress.eta_seconds is None
    # Resumed from a checkpoint at step 20 (the process was killed after step 30).
    progress.apply(RunStart({**start.info, "start_step": 20}))
    assert progress.steps == [10, 20] and progress.stop_reason is None
    progress.apply(step(30, 3.4))
    assert progress.losses == [5.0, 4.0, 3.4]


def test_the_run_state_is_worked_out_in_one_place(tmp_path: Path) -> None:
    run, progress = TrainingRun(tmp_path), RunProgress()
    assert run_state(run, progress, running=True).kind == "preparing"
    progress.apply(RunStart({"parameters": 1, "train_config": {"steps": 100}}))
    assert run_state(run, progress, running=True).text == "training"
    assert run_state(run, progress, running=True, bad_lines=2).text == (
        "training · 2 unreadable metrics lines")
    assert run_state(run, progress, running=False) == RunState("idle", "not running")
    (tmp_path / "train.log").write_text("$ python -m saga_model.cli.train\n"
                                        "grain-train: error: no stories found in x\n")
    failed = run_state(run, progress, running=False)
    assert (failed.kind, failed.failure) == ("failed",
                                             "grain-train: error: no stories found in x")
    progress.apply(end(40, "stopped"))
    assert run_state(run, progress, running=False).kind == "paused"
    progress.apply(end(100, "completed"))
    assert run_state(run, progress, running=False).text == "finished (completed)"


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


# -- speech -----------------------------------------------------------------------------------

def test_sentences_are_cut_as_the_text_streams_in() -> None:
    text = 'Zara ran. "Wait!" said Milo… They laughed.\nThe end'
    assert split_sentences(text) == ["Zara ran.", '"Wait!" said Milo…', "They laughed.",
                                     "The end"]
    splitter = SentenceSplitter()
    spoken = [splitter.feed(piece) for piece in ("Zara ra", "n.", " \"Wait", "!\" said",
                                                 " Milo… They", " laughed.\nThe", " end")]
    assert spoken == [[], [], ["Zara ran."], [], ['"Wait!" said Milo…'], ["They laughed."],
                      []]
    assert splitter.flush() == ["The end"] and splitter.flush() == []
    assert [text[a:b].strip() for a, b in sentence_spans(text)] == split_sentences(text)


def test_a_quotation_of_several_sentences_is_one_sentence() -> None:
    text = 'Tom said, "Let us go. It is late!" Mia nodded. “Come. Now,” she said.\nThe end.'
    assert split_sentences(text) == ['Tom said, "Let us go. It is late!"', "Mia nodded.",
                                     "“Come. Now,” she said.", "The end."]
    assert split_sentences('"Run. Run" he said\nThey ran.') == ['"Run. Run" he said',
                                                                 "They ran."]


def test_engines_are_found_on_path_and_commands_keep_text_off_the_command_line(
        app_home: AppHome, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(app_home.bin))
    assert find_engine() is None
    app_home.fake_program("espeak-ng")
    espeak = find_engine()
    assert espeak is not None and espeak.name == "espeak-ng" and espeak.audio_suffix == ".wav"
    assert espeak.command("", 150) == [espeak.path, "-s", "150", "--stdin"]
    app_home.fake_program("say")
    say = find_engine()  # say comes first when both are there
    assert say is not None and say.name == "say"
    assert say.command("Moira", 170, Path("/x/a.aiff")) == [
        say.path, "-v", "Moira", "-r", "170", "-o", "/x/a.aiff", "-f", "-"]


def test_speaker_reports_an_engine_failure_and_drops_the_rest(app_home: AppHome) -> None:
    log = app_home.fake_program("say", fail="Voice `Bogus' not found.")
    errors: list[str] = []
    speaker = Speaker(SpeechEngine("say", str(app_home.bin / "say")), "Bogus", 150,
                      errors.append)
    for sentence in ("One.", "Two.", "Three."):
        speaker.say(sentence)
    deadline = time.monotonic() + 10
    while speaker.speaking and time.monotonic() < deadline:
        time.sleep(0.02)
    speaker.close()
    assert errors == ["say failed: Voice `Bogus' not found."]
    assert len(log.read_text().splitlines()) == 1


def test_audio_export_writes_the_whole_file_or_nothing(app_home: AppHome,
                                                       tmp_path: Path) -> None:
    log = app_home.fake_program("say")
    engine = SpeechEngine("say", str(app_home.bin / "say"))
    folder = tmp_path / "audio"
    folder.mkdir()
    target = folder / "owls.aiff"
    export_audio(engine, "The owls slept.", target, "", 150)
    assert target.read_bytes() == b"FORM....AIFF" and list(folder.iterdir()) == [target]
    assert json.loads(log.read_text())["stdin"] == "The owls slept."
    app_home.fake_program("say", fail="cannot write")
    with pytest.raises(OSError, match="say failed: cannot write"):
        export_audio(engine, "Again.", folder / "again.aiff", "", 150)
    assert list(folder.iterdir()) == [target]


# -- clipboard, keymap, bedtime pacing ---------------------------------------------------------

@pytest.mark.parametrize(("env", "platform", "tool", "expected"), [
    ({"SSH_TTY": "/dev/pts/1", "DISPLAY": ":0"}, "linux", None, "over SSH (OSC 52)"),
    ({"SSH_CONNECTION": "a b c d", "TMUX": "/tmp/t", "DISPLAY": ":0"}, "linux", None,
     "set -g set-clipboard on"),
    ({"TERM_PROGRAM": "Apple_Terminal", "SSH_CLIENT": "a b c"}, "darwin", None,
     "macOS Terminal cannot receive copied text over SSH"),
    ({"TERM_PROGRAM": "Apple_Terminal"}, "darwin", ["/usr/bin/pbcopy"], "copied"),
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", ["/bin/wl-copy"], "copied"),
    ({"DISPLAY": ":0"}, "linux", ["/bin/xsel", "--clipboard", "--input"], "copied"),
    ({}, "linux", None, "no local clipboard program"),
    ({"TERM_PROGRAM": "Apple_Terminal", "web": "1"}, "darwin", None, "the browser's clipboard"),
])
def test_copy_plans(env: dict[str, str], platform: str, tool: list[str] | None,
                    expected: str) -> None:
    available = {"pbcopy": "/usr/bin/pbcopy", "wl-copy": "/bin/wl-copy", "xsel": "/bin/xsel"}
    plan = plan_copy(env, platform, available.get, web="web" in env)
    assert plan.tool == tool
    message, severity = copy_message(plan, tool is not None, "Story", "ctrl+o")
    assert expected in message
    assert severity == ("warning" if "cannot" in expected else "information")


def test_keymap_entries_are_checked() -> None:
    accepted, problems = check_keymap(
        {"generate": "ctrl+w", "copy": "ctrl+w", "bogus": "f9", "stop": "ctrl+",
         "again": "x", "read-aloud": "ctrl+q", "tell-again": "f1", "versions": "f8, shift+v",
         "search": "ctrl+alt+alt+s"},
        GrainApp.SCREEN_BINDINGS, GrainApp.BINDINGS)
    assert accepted == {"generate": "ctrl+w", "versions": "f8,shift+v"}
    assert problems == [
        "copy = 'ctrl+w': ctrl+w is already Generate (Story screen)",
        "bogus: there is no key binding with this id",
        "stop = 'ctrl+': not a key name (e.g. ctrl+w, f6, x)",
        "again = 'x': this key works while you type in a field, so it needs a modifier "
        "(e.g. ctrl+) or a function key",
        "read-aloud = 'ctrl+q': ctrl+q is reserved",
        "tell-again = 'f1': f1 is already Help (Library screen)",
        "search = 'ctrl+alt+alt+s': not a key name (e.g. ctrl+w, f6, x)",
    ]
    for key in ("ctrl+g", "f12", "escape", "question_mark", "?", "shift+tab", "space"):
        assert valid_key(key)
    for key in ("", "ctrl+", "hyperdrive+x", "ctrl+notakey"):
        assert not valid_key(key)


def test_words_are_revealed_whole() -> None:
    reveal = WordReveal()
    reveal.push("Once upon a ti")
    assert [reveal.next_word(False) for _ in range(4)] == ["Once", " upon", " a", ""]
    reveal.push("me,\n\nthe")
    assert reveal.next_word(False) == " time,"
    assert reveal.next_word(False) == ""  # "the" may go on ("then")
    assert reveal.next_word(True) == "\n\nthe" and reveal.pending == ""
    reveal.push(" end. ")
    assert reveal.take_all() == " end. " and reveal.next_word(True) == ""


def test_new_preferences_round_trip_and_are_range_checked(tmp_path: Path) -> None:
    path = tmp_path / "prefs.toml"
    prefs = Preferences()
    prefs.speech.voice, prefs.speech.rate, prefs.bedtime.enabled = "Moira", 180, True
    prefs.keymap = {"generate": "ctrl+w"}
    save_preferences(path, prefs)
    assert load_preferences(path).prefs == prefs
    path.write_text('[speech]\nrate = 5\n[bedtime]\nwords_per_minute = 200\n'
                    '[keymap]\ncopy = "ctrl+b"\nsave = 3\n')
    loaded = load_preferences(path)
    assert loaded.prefs.speech.rate == 150 and loaded.prefs.bedtime.words_per_minute == 200
    assert loaded.prefs.keymap == {"copy": "ctrl+b"}
    assert loaded.warning is not None
    assert "speech.rate" in loaded.warning and "keymap.save" in loaded.warning


def test_export_html_escapes_everything(tmp_path: Path) -> None:
    saved = SavedStory(title="<Zoë> & the owl", text='One <b>night</b>.\n"Hoo!"\n\nThe end.')
    page = export_story(saved, tmp_path, "html")
    assert page.name == "zoe-the-owl.html"
    html = page.read_text()
    assert "<title>&lt;Zoë&gt; &amp; the owl</title>" in html
    assert "<p>One &lt;b&gt;night&lt;/b&gt;.<br>\n&quot;Hoo!&quot;</p>\n<p>The end.</p>" in html
    assert "<b>" not in html


# -- grain-tui command line -------------------------------------------------------------------

def test_print_paths_starts_no_ui_and_loads_no_model_code(app_home: AppHome) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from tui.cli import main; code = main(["
         "'--print-paths']); print(sorted(m for m in ('mlx.core', 'textual.app') "
         "if m in sys.modules)); sys.exit(code)"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "[]"
    table = {name.strip(): path for name, path in (line.rsplit("  ", 1) for line in lines[:-1])}
    assert table["library"] == str(app_home.data / "grain-de-saga" / "library.sqlite3")
    assert table["preferences"] == str(app_home.config / "grain-de-saga" / "preferences.toml")
    assert table["runs"] == str(app_home.runs)
    shipped = shipped_model()  # the real one: the child process sees the installed package
    if shipped is None:
        assert table["models"].endswith("none yet (train one in the app, F3)")
    else:
        assert table["model: shipped model"] == str(shipped)


@pytest.mark.parametrize(("argv", "message"), [
    (["--inline", "--theme", "spaceships"], "choose one of: adventure"),
    (["--inline", "--temperature", "-1"], "temperature must be >= 0"),
    (["--inline", "--model", "/nowhere"], "no model in /nowhere"),
    (["--inline"], "there is no model yet"),
    (["--characters", "Zara"], "--characters needs --inline"),
])
def test_inline_flags_are_validated_like_the_form(app_home: AppHome, argv: list[str],
                                                  message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
