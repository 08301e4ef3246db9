"""``grain-eval --judge``, run in a subprocess with a tiny random judge written as GGUF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli
from judge_helpers import write_tiny_gguf

VALID = FIXTURES / "stories" / "valid.txt"


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("judge") / "tiny.gguf")


def judge_cli(tiny_judge: Path, *args: str):
    return run_cli("-m", "saga_model.cli.eval", "--judge_model", str(tiny_judge), *args)


def test_judge_reports_generated_and_real_stories_as_table_and_json(
        tiny_judge: Path, tmp_path: Path) -> None:
    args = ("--judge", "4", "--max_tokens", "60", "--seed", "3", "--judge_file", str(VALID),
            "--no_repeat_ngram", "3")
    result = judge_cli(tiny_judge, *args, "--json", str(tmp_path / "a.json"))
    assert result.returncode == 0, result.stderr
    assert "no-repeat n-gram 3" in result.stdout
    table = result.stdout.splitlines()
    assert table[1].split()[:4] == ["stories", "judge", "ppl", "dist-2"]
    assert table[2].startswith("generated") and table[3].startswith("valid.txt")
    report = json.loads((tmp_path / "a.json").read_text())["judge"]
    generated, real = report["rows"]
    assert report["sampling"]["no_repeat_ngram"] == 3 and report["model"] == "tiny.gguf"
    assert generated["stories"] == real["stories"] == 4
    assert generated["names"] is not None and real["names"] is None
    assert generated["judge_tokens"] > 0 and math.isfinite(generated["judge_perplexity"])
    assert 0 < real["distinct_2"] <= real["distinct_3"] <= 1
    assert real["finished"] == 1.0  # real stories end on a closed sentence
    again = judge_cli(tiny_judge, *args, "--json", str(tmp_path / "b.json"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "b.json").read_text())["judge"] == report  # seeded


@pytest.mark.parametrize("args, message", [
    (("--judge", "2", "--judge_model", "absent.gguf"), "judge model not found: absent.gguf"),
    (("--judge_file", str(VALID)), "--judge_file needs --judge N"),
    (("--judge", "2", "--judge_file", "{empty}"), "no stories in"),
    (("--judge", "2", "--presence_penalty", "-1"), "presence_penalty must be >= 0"),
])
def test_judge_bad_input_gets_one_line_and_exit_2(tiny_judge: Path, tmp_path: Path,
                                                  args: tuple[str, ...], message: str) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    args = tuple(a.replace("{empty}", str(empty)) for a in args)
    result = run_cli("-m", "saga_model.cli.eval", "--judge_model", str(tiny_judge), *args,
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert message in lines[0]
