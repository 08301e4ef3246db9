"""grain-train --init_from: teaching a tiny base model the family set through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli
from test_cli import assert_one_line_error

from saga_model import checkpoint as ckpt
from saga_model.evaluate import text_loss

FAMILY = FIXTURES / "family"
SHORT_RUN = ("--steps", "6", "--eval_every", "3", "--save_every", "3", "--replay", "0.25",
             "--quiet")


def teach(base: Path, data: Path, out: Path, *extra: str):
    return run_cli("-m", "saga_model.cli.train", "--init_from", str(base), "--data_dir",
                   str(data), "--output_dir", str(out), *extra)


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_fine_tune_learns_the_family_keeps_the_tokenizer_and_resumes(
        tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "taught"
    result = teach(tiny_run, FAMILY / "train", out, *SHORT_RUN)
    assert result.returncode == 0, result.stderr
    assert (out / ckpt.TOKENIZER).read_bytes() == (tiny_run / ckpt.TOKENIZER).read_bytes()
    assert (json.loads((out / ckpt.CONFIG).read_text())
            == json.loads((tiny_run / ckpt.CONFIG).read_text()))
    assert len(list((out / "replay").glob("*.txt"))) >= 2
    base, tokenizer = ckpt.load_model(tiny_run)
    taught, _ = ckpt.load_model(out)
    before = text_loss(base, tokenizer, FAMILY / "heldout").loss
    assert text_loss(taught, tokenizer, FAMILY / "heldout").loss < before
    assert json.loads((out / "run.json").read_text())["init_from"] == str(tiny_run)

    more = run_cli("-m", "saga_model.cli.train", "--resume", "--output_dir", str(out),
                   "--steps", "9", "--quiet")
    assert more.returncode == 0, more.stderr
    starts = [e for e in events(out) if e["event"] == "start"]
    assert starts[-1]["start_step"] == 6 and events(out)[-1]["step"] == 9


def test_a_folder_of_markdown_stories_is_enough(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-stories"
    folder.mkdir()
    for story in sorted((FAMILY / "train").glob("*.txt"))[:10]:
        shutil.copy(story, folder / f"{story.stem}.md")
    (folder / "README.md").write_bytes(b"\x00not a story\x00")  # skipped, or it would fail
    out = tmp_path / "taught"
    result = teach(tiny_run, folder, out, *SHORT_RUN)
    assert result.returncode == 0, result.stderr
    start = events(out)[0]
    assert start["valid_tokens"] > 0 and start["train_tokens"] > start["valid_tokens"]


def _binary_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "binary"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_bytes(bytes(range(256)) * 20)
    return folder


def _base_without_tokenizer(tiny_run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in (ckpt.WEIGHTS, ckpt.CONFIG):
        shutil.copy(tiny_run / name, folder / name)
    return folder


@pytest.mark.parametrize(("case", "fragments"), [
    ("empty folder", ("no .txt files", ".md")),
    ("binary files", ("is not a text file",)),
    ("base without tokenizer", ("tokenizer not found",)),
    ("different config", ("--config does not match the base model",)),
    ("different context", ("--context_length 64 does not match",)),
])
def test_bad_input_gets_one_line_and_exit_2(tiny_run: Path, tmp_path: Path, case: str,
                                            fragments: tuple[str, ...]) -> None:
    base, data, extra = tiny_run, FAMILY / "train", []
    if case == "empty folder":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "binary files":
        data = _binary_folder(tmp_path)
    elif case == "base without tokenizer":
        base = _base_without_tokenizer(tiny_run, tmp_path)
    elif case == "different config":
        extra = ["--config", "seed"]
    else:
        extra = ["--context_length", "64"]
    out = tmp_path / "out"
    assert_one_line_error(teach(base, data, out, *extra, "--quiet"), *fragments)
    assert not (out / "checkpoints").exists()
