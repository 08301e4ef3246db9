"""tools/sampling_sweep.py end to end with tiny sizes and a tiny random judge."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, ROOT, run_cli
from judge_helpers import write_tiny_gguf

TOOL = str(ROOT / "tools" / "sampling_sweep.py")


def test_sweep_generates_scores_and_reports_reproducibly(tmp_path: Path) -> None:
    judge = write_tiny_gguf(tmp_path / "tiny.gguf")
    settings = ("--only", "baseline", "--only", "no-repeat 4")
    for out, workers in ((tmp_path / "a", "1"), (tmp_path / "b", "2")):
        result = run_cli(TOOL, "generate", "--out", str(out), "--stories", "2",
                         "--workers", workers, *settings)
        assert result.returncode == 0, result.stderr
    stories = sorted(p.name for p in (tmp_path / "a" / "stories").iterdir())
    assert stories == ["baseline.json", "no-repeat_4.json"]
    for name in stories:  # parallel workers write the same stories as one process
        assert (tmp_path / "a" / "stories" / name).read_text() == \
            (tmp_path / "b" / "stories" / name).read_text()
    saved = json.loads((tmp_path / "a" / "stories" / "no-repeat_4.json").read_text())
    assert saved["sampling"]["no_repeat_ngram"] == 4 and len(saved["stories"]) == 2
    out = str(tmp_path / "a")
    result = run_cli(TOOL, "score", "--out", out, "--judge_model", str(judge), "--real",
                     str(FIXTURES / "stories" / "valid.txt"))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "a" / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["baseline", "no-repeat 4", "real stories"]
    assert rows[-1]["stories"] == 2 and rows[0]["judge_perplexity"] > 1
    plot = tmp_path / "sweep.svg"
    report = run_cli(TOOL, "report", "--out", out, "--max_perplexity_ratio", "10",
                     "--plot", str(plot))
    assert report.returncode == 0, report.stderr
    assert "| baseline |" in report.stdout and "picked: " in report.stdout
    drawing = plot.read_text()
    assert drawing.startswith("<svg") and drawing.count("<circle") == 3
