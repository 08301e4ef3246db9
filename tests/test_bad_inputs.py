"""The bad-input sweep: every command, every kind of flag, run as a user runs it.

Each bad input must end with exit code 2 and exactly one line on stderr (no traceback), and
must leave nothing behind in the folder it ran in. The inputs fail before any real work, so
each case costs a fraction of a second; only the cases that need a model load the tiny one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from saga_model import checkpoint as ckpt

#: As root, permissions are enforced only without these capabilities (setpriv drops them).
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
LONG_NAME = "A" * 100_000

COMMANDS = {"generate": "saga_model.cli.generate", "eval": "saga_model.cli.eval",
            "train": "saga_model.cli.train", "data": "saga_model.cli.data", "tui": "tui"}

# (command, arguments, a fragment of the expected message); {placeholders} are files made by
# the `workdir` fixture, {model} the tiny trained model, {corpus} the fixture stories.
CASES: list[tuple[str, list[str], str]] = [
    # grain-generate: sampling numbers
    ("generate", ["--seed", "-1"], "seed must be >= 0"),
    ("generate", ["--seed", "x"], "invalid int value"),
    ("generate", ["--seed", LONG_NAME], "invalid int value"),
    ("generate", ["--temperature", "nan"], "--temperature: must be a finite number"),
    ("generate", ["--temperature", "inf"], "--temperature: must be a finite number"),
    ("generate", ["--temperature", "-1"], "temperature must be >= 0"),
    ("generate", ["--temperature", "warm"], "invalid number"),
    ("generate", ["--name_boost", "nan"], "--name_boost: must be a finite number"),
    ("generate", ["--name_boost=-inf"], "--name_boost: must be a finite number"),
    ("generate", ["--top_p", "nan"], "--top_p: must be a finite number"),
    ("generate", ["--top_p", "0"], "top_p must be in (0, 1]"),
    ("generate", ["--min_p", "1"], "min_p must be in [0, 1)"),
    ("generate", ["--repetition_penalty", "0"], "repetition_penalty must be > 0"),
    ("generate", ["--top_k", "-1"], "top_k must be >= 0"),
    ("generate", ["--max_tokens", "0"], "max_tokens must be > 0"),
    ("generate", ["--num_stories", "0"], "--num_stories must be at least 1"),
    # grain-generate: choices and names
    ("generate", ["--theme", "pirates"], "unknown theme 'pirates'"),
    ("generate", ["--characters", "R2-D2!"], "invalid character name"),
    ("generate", ["--characters", LONG_NAME], "too long (100000 characters"),
    ("generate", ["--bogus"], "unrecognized arguments"),
    # grain-generate: model and tokenizer files
    ("generate", ["--model_path", "{missing}"], "model not found"),
    ("generate", ["--model_path", "{empty_dir}"], "no model found"),
    ("generate", ["--model_path", "{corrupt_npz}"], "not a valid model file"),
    ("generate", ["--model_path", "{text_file}"], "not a valid model file"),
    ("generate", ["--tokenizer_path", "{missing}"], "tokenizer not found"),
    ("generate", ["--tokenizer_path", "{text_file}"], "tokenizer"),
    ("generate", ["--tokenizer_path", "{other_tokenizer}"], "do not belong together"),
    ("generate", ["--model_path", "{shipped}", "--tokenizer_path", "{model}/tokenizer.json"],
     "do not belong together"),  # a smaller vocabulary than the model's
    # grain-eval
    ("eval", [], "nothing to do"),
    ("eval", ["--text", "{missing}"], "--text file not found"),
    ("eval", ["--text", "{empty_txt}"], "no stories found"),
    ("eval", ["--text", "{separators_txt}"], "no stories found"),
    ("eval", ["--text", "{corpus}/valid.txt", "--json", "{empty_dir}"], "is a folder"),
    ("eval", ["--text", "{corpus}/valid.txt", "--json", "{text_file}/x.json"], "is a file"),
    ("eval", ["--conditioning", "1", "--temperature", "nan"], "must be a finite number"),
    ("eval", ["--conditioning", "1", "--seed", "-5"], "seed must be >= 0"),
    ("eval", ["--text", "{corpus}/valid.txt", "--tokenizer_path", "{other_tokenizer}"],
     "do not belong together"),
    # grain-train: folders
    ("train", ["--data_dir", "{corpus}", "--output_dir", "{text_file}"], "is a file, not a folder"),
    ("train", ["--data_dir", "{corpus}", "--output_dir", "{text_file}/out"], "is a file"),
    ("train", ["--data_dir", "{corpus}", "--cache_dir", "{text_file}"], "is a file, not a folder"),
    ("train", ["--data_dir", "{missing}"], "data path not found"),
    ("train", ["--data_dir", "{empty_dir}"], "no .txt files"),
    ("train", ["--data_dir", "{separators_txt}"], "no stories found"),
    ("train", [], "--data_dir is required"),
    ("train", ["--resume"], "nothing to resume"),
    # grain-train: model shape and settings
    ("train", ["--data_dir", "{corpus}", "--config", "{float_config}"],
     "d_model must be a whole number, not 8.0"),
    ("train", ["--data_dir", "{corpus}", "--config", "{text_file}"], "cannot read model config"),
    ("train", ["--data_dir", "{corpus}", "--config", "{list_config}"], "not a JSON object"),
    ("train", ["--data_dir", "{corpus}", "--config", "{unknown_key_config}"], "unknown keys"),
    ("train", ["--data_dir", "{corpus}", "--config", "{odd_heads_config}"], "divisible"),
    ("train", ["--data_dir", "{corpus}", "--config", "huge"], "unknown --config"),
    ("train", ["--data_dir", "{corpus}", "--lr", "nan"], "--lr: must be a finite number"),
    ("train", ["--data_dir", "{corpus}", "--lr", "inf"], "--lr: must be a finite number"),
    ("train", ["--data_dir", "{corpus}", "--lr", "0"], "invalid value for lr"),
    ("train", ["--data_dir", "{corpus}", "--dropout", "1.5"], "dropout must be in [0, 1)"),
    ("train", ["--data_dir", "{corpus}", "--batch_size", "0"], "invalid value for batch_size"),
    ("train", ["--data_dir", "{corpus}", "--steps", "-3"], "invalid value for steps"),
    ("train", ["--data_dir", "{corpus}", "--steps", "lots"], "invalid int value"),
    ("train", ["--data_dir", "{corpus}", "--context_length", "0"], "must be positive"),
    ("train", ["--data_dir", "{corpus}", "--precision", "float8"], "invalid value for precision"),
    ("train", ["--data_dir", "{corpus}", "--max_minutes", "nan"], "must be a finite number"),
    ("train", ["--data_dir", "{corpus}", "--valid_fraction", "1"], "valid_fraction"),
    ("train", ["--data_dir", "{corpus}", "--tokenizer_path", "{text_file}"], "tokenizer"),
    ("train", ["--data_dir", "{corpus}", "--batch_size", "100000"], "GB of memory for one step"),
    # grain-data
    ("data", [], "choose a command"),
    ("data", ["download", "nothing"], "invalid choice"),
    ("data", ["download", "tinystories", "--variant", "v9"], "invalid choice"),
    ("data", ["download", "tinystories", "--base_url", "http://[::1"], "not a valid address"),
    ("data", ["download", "tinystories", "--base_url", "http://host:port"],
     "not a valid address"),
    ("data", ["download", "tinystories", "--base_url", "ftp://example.org"], "https://"),
    ("data", ["download", "tinystories", "--base_url", "http://"], "name a host"),
    ("data", ["download", "tinystories", "--dest", "{text_file}"], "cannot create"),
    # grain-tui: the story flags are checked before the app starts
    ("tui", ["--inline", "--seed", "-1", "--model", "{model}"], "seed must be >= 0"),
    ("tui", ["--inline", "--temperature", "nan", "--model", "{model}"], "must be a finite"),
    ("tui", ["--inline", "--temperature", "inf", "--model", "{model}"], "must be a finite"),
    ("tui", ["--inline", "--top_p", "2", "--model", "{model}"], "top_p must be in (0, 1]"),
    ("tui", ["--inline", "--max_tokens", "0", "--model", "{model}"], "max_tokens must be > 0"),
    ("tui", ["--inline", "--theme", "pirates", "--model", "{model}"], "unknown theme"),
    ("tui", ["--inline", "--characters", LONG_NAME, "--model", "{model}"], "too long"),
    ("tui", ["--inline", "--model", "{empty_dir}"], "no model in"),
    ("tui", ["--seed", "3"], "--inline (the app has its own form)"),
    ("tui", ["--bogus"], "unrecognized arguments"),
]

PERMISSION_CASES: list[tuple[str, list[str], str]] = [
    ("eval", ["--text", "{corpus}/valid.txt", "--json", "{read_only}/report.json"],
     "cannot write --json"),
    ("train", ["--data_dir", "{corpus}", "--output_dir", "{read_only}/out"],
     "cannot write --output_dir"),
    ("train", ["--data_dir", "{corpus}", "--cache_dir", "{read_only}/cache"],
     "cannot write --cache_dir"),
    ("generate", ["--model_path", "{unreadable_model}"], "Permission denied"),
    ("data", ["download", "tinystories", "--dest", "{read_only}/ts"], "cannot create"),
]


@pytest.fixture()
def workdir(tmp_path: Path, tiny_run: Path) -> dict[str, str]:
    """A folder of bad files to point the commands at; the command runs inside it."""
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "separators.txt").write_text("<|endoftext|>\n\n<|endoftext|>\n  \n")
    (tmp_path / "text.txt").write_text("just some words\n")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    configs = {"float": {"d_model": 8.0}, "list": [1, 2], "unknown_key": {"depth": 3},
               "odd_heads": {"d_model": 30, "n_heads": 4}}
    for name, config in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    unreadable = tmp_path / "unreadable_model"
    shutil.copytree(tiny_run, unreadable, ignore=shutil.ignore_patterns("checkpoints", "best"))
    (unreadable / ckpt.WEIGHTS).chmod(0o000)
    return {"missing": str(tmp_path / "no" / "such"), "empty_dir": str(tmp_path / "empty_dir"),
            "empty_txt": str(tmp_path / "empty.txt"),
            "separators_txt": str(tmp_path / "separators.txt"),
            "text_file": str(tmp_path / "text.txt"), "corrupt_npz": str(tmp_path / "corrupt.npz"),
            "other_tokenizer": str(ROOT / "saga_model" / "pretrained" / ckpt.TOKENIZER),
            "shipped": str(ROOT / "saga_model" / "pretrained"),
            **{f"{name}_config": str(tmp_path / f"{name}.json") for name in configs},
            "read_only": str(read_only), "unreadable_model": str(unreadable),
            "corpus": str(ROOT / "tests" / "fixtures" / "stories"), "model": str(tiny_run),
            "root": str(tmp_path)}


def files_under(folder: Path) -> set[Path]:
    """Everything under ``folder`` (the read-only folder cannot be listed by a test as root
    without trouble, so it is listed too: it must stay empty)."""
    return set(folder.rglob("*"))


def run_bad(command: str, args: list[str], files: dict[str, str],
            prefix: list[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run one command with bad input; model-using commands get the tiny model by default."""
    argv = [arg.format(**files) for arg in args]
    if command in ("generate", "eval") and "--model_path" not in argv:
        argv += ["--model_path", files["model"]]
    if command == "train" and "--output_dir" not in argv:
        argv += ["--output_dir", str(Path(files["root"]) / "out")]
    return subprocess.run([*prefix, "python", "-m", COMMANDS[command], *argv],
                          cwd=files["root"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})


def assert_clean_failure(result: subprocess.CompletedProcess[str], command: str,
                         fragment: str) -> None:
    """Exit code 2, one short line on stderr naming the command, no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"grain-{command}") and ": error: " in lines[0], lines[0][:300]
    assert fragment in lines[0], lines[0][:300]
    assert len(lines[0]) < 400  # a pasted story is not echoed whole


@pytest.mark.parametrize(("command", "args", "fragment"), CASES,
                         ids=[f"{c}-{' '.join(a)[:40]}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(workdir: dict[str, str], command: str,
                                                  args: list[str], fragment: str) -> None:
    root = Path(workdir["root"])
    before = files_under(root)
    result = run_bad(command, args, workdir)
    assert_clean_failure(result, command, fragment)
    assert files_under(root) == before


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"),
                    reason="as root, permissions can only be tested with setpriv")
@pytest.mark.parametrize(("command", "args", "fragment"), PERMISSION_CASES,
                         ids=[f"{c}-{' '.join(a)[:40]}" for c, a, _ in PERMISSION_CASES])
def test_unwritable_and_unreadable_paths_fail_before_the_work(
        workdir: dict[str, str], command: str, args: list[str], fragment: str) -> None:
    root = Path(workdir["root"])
    before = files_under(root)
    result = run_bad(command, args, workdir, NO_OVERRIDE if os.geteuid() == 0 else [])
    assert_clean_failure(result, command, fragment)
    assert files_under(root) == before


def test_scripts_report_errors_like_the_commands(workdir: dict[str, str]) -> None:
    """The seed's scripts/train.py and scripts/generate.py go through the same error path."""
    result = run_cli("scripts/generate.py", "--model_path", workdir["model"], "--seed", "-1")
    assert_clean_failure(result, "generate", "seed must be >= 0")


def small_disk(folder: Path) -> bool:
    """Mount a 3 MB tmpfs on ``folder`` (root only); False where that is not allowed."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                             capture_output=True) if os.geteuid() == 0 else None
    return mounted is not None and mounted.returncode == 0


#: Stands in for a full disk where no small tmpfs can be mounted: MLX's writer fails the way it
#: does on a full disk, after writing part of the file, and the disk reports no free space.
FULL_DISK_AFTER_FIRST_CHECKPOINT = """
import collections, shutil, sys
import mlx.core as mx
from saga_model.cli.train import run
real_save, saves = mx.save_safetensors, []
def save(path, arrays, metadata=None):
    saves.append(path)
    if len(saves) <= 2:  # the first checkpoint's weights and optimizer
        return real_save(path, arrays, metadata=metadata)
    open(path, "wb").write(b"partial")
    raise RuntimeError("[write] Unable to write 35861 bytes to file.")
mx.save_safetensors = save
shutil.disk_usage = lambda path: collections.namedtuple("usage", "total used free")(1, 1, 0)
sys.argv[0] = "grain-train"
run()
"""


def test_full_disk_at_checkpoint_time_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    real_disk = small_disk(disk)
    try:
        args = ["--data_dir", str(ROOT / "tests" / "fixtures" / "stories"), "--output_dir",
                str(disk / "out"), "--config", "tiny", "--steps", "30", "--batch_size", "2",
                "--eval_every", "0", "--save_every", "10", "--quiet"]
        result = (run_cli("-m", "saga_model.cli.train", *args) if real_disk
                  else run_cli("-c", FULL_DISK_AFTER_FIRST_CHECKPOINT, *args))
        assert_clean_failure(result, "train", "the disk is full")
        assert [p.name for p in ckpt.list_checkpoints(disk / "out")] == ["step_0000010"]
        state, _ = ckpt.load_training_state(disk / "out" / ckpt.CHECKPOINTS / "step_0000010")
        assert state.step == 10
        assert not [p for p in disk.rglob("*") if ".tmp" in p.name]
    finally:
        if real_disk:
            subprocess.run(["umount", str(disk)], check=True)


def test_read_only_checkpoint_folder_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / ckpt.CHECKPOINTS).mkdir(parents=True)
    (out / ckpt.CHECKPOINTS).chmod(0o555)
    result = subprocess.run(
        [*(NO_OVERRIDE if os.geteuid() == 0 else []), "python", "-m", "saga_model.cli.train",
         "--data_dir", str(ROOT / "tests" / "fixtures" / "stories"), "--output_dir", str(out),
         "--config", "tiny", "--steps", "10", "--batch_size", "2", "--eval_every", "0",
         "--save_every", "5", "--quiet"], capture_output=True, text=True, timeout=300)
    assert_clean_failure(result, "train", "Permission denied")
    assert [p.name for p in out.rglob("*")] == [ckpt.CHECKPOINTS]  # no half-made run left


def test_web_page_served_as_the_dataset_is_refused(tmp_path: Path) -> None:
    """A captive portal answers every address with its login page and status 200."""
    from test_download import TRAIN, VALID, HubServer  # the local hub of the download tests

    page = b"<!DOCTYPE html>\n<html><body>Please log in to the Wi-Fi</body></html>\n"
    hub = HubServer({TRAIN: page, VALID: page})
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_cli("-m", "saga_model.cli.data", "download", "tinystories", "--dest",
                         str(tmp_path / "ts"), "--base_url", hub.url)
    finally:
        hub.shutdown()
        hub.server_close()
    assert_clean_failure(result, "data", "sent a web page instead of the file")
    assert not (tmp_path / "ts").exists()


@pytest.mark.asyncio
async def test_any_error_while_writing_ends_the_inline_app_with_a_message(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only SagaError: an unexpected error reaches the screen instead of a hang."""
    import saga_model
    from tui.inline import InlineStoryApp
    from tui.session import StoryJob, new_story

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("expected non-negative integer")

    monkeypatch.setattr(saga_model, "stream_story", broken)
    request, options = new_story(max_tokens=5)
    app = InlineStoryApp(StoryJob(request, options, tiny_run, "tiny"))
    async with app.run_test() as pilot:
        for _ in range(500):
            if app.error is not None:
                break
            await pilot.pause(0.02)
    assert app.error == "The story could not be written: ValueError: expected non-negative " \
        "integer"


def test_preferences_ignore_and_never_save_values_the_model_refuses(tmp_path: Path) -> None:
    from tui.prefs import StorySettings, load_preferences, save_preferences

    path = tmp_path / "preferences.toml"
    path.write_text("[story]\ntemperature = nan\ntop_p = 7.0\nmax_tokens = 60\n"
                    "seed = -4\n[speech]\nrate = inf\n")
    loaded = load_preferences(path)
    defaults = StorySettings()
    story = loaded.prefs.story
    assert (story.temperature, story.top_p, story.max_tokens, story.seed) == (
        defaults.temperature, defaults.top_p, 60, None)
    assert loaded.warning is not None
    for name in ("story.temperature", "story.top_p", "story.seed", "speech.rate"):
        assert name in loaded.warning
    story.temperature = float("nan")  # as typed into the form
    save_preferences(path, loaded.prefs)
    assert "nan" not in path.read_text()
    assert load_preferences(path).warning is None


def test_a_utf16_story_file_is_read_like_utf8(tmp_path: Path) -> None:
    """Windows editors save "Unicode" text as UTF-16 with a byte-order mark."""
    from saga_model.data import read_stories

    source = ROOT / "tests" / "fixtures" / "stories" / "valid.txt"
    utf16 = tmp_path / "valid.txt"
    utf16.write_text(source.read_text(encoding="utf-8"), encoding="utf-16")
    assert read_stories(utf16) == read_stories(source)
