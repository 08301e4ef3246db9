"""Smoke runs of the benchmarks (tiny sizes) so they keep working, and the report renderer."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report

ROOT = Path(__file__).parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None


def run_benchmark(script: str, out: Path, *args: str) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with --smoke in a fresh process and return its JSON."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke", "--out",
                             str(out), *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|" not in result.stdout and result.stdout.strip()  # a plain-text table
    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] and data["machine"]["mlx"] and data["machine"]["mlx_blas"]
    assert data["date"] and data["settings"]["smoke"] is not False
    return data


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder filled by smoke runs of the benchmarks."""
    folder = tmp_path_factory.mktemp("results")
    run_benchmark("train_throughput.py", folder / "train_throughput_cpu.json")
    run_benchmark("generate_speed.py", folder / "generate_speed_cpu.json")
    run_benchmark("tui_startup.py", folder / "tui_startup_cpu.json")
    run_benchmark("tui_speed.py", folder / "tui_speed_cpu.json")
    run_benchmark("train_breakdown.py", folder / "train_breakdown_gpu.json")
    return folder


def test_train_throughput_smoke(results: Path) -> None:
    data = json.loads((results / "train_throughput_cpu.json").read_text())
    rows = data["results"]
    assert data["flops_formula"] and data["peak_flops"][data["mfu_peak"]] > 0
    measured = [r for r in rows if "tokens_per_sec" in r]
    assert measured and not [r for r in rows if "error" in r]
    for row in measured:
        assert row["tokens_per_sec"] > 0 and row["mfu"] > 0 and row["steps"] >= 2
        assert row["params"] > 0 and row["host_batch_ms"] > 0
    assert {r["variant"] for r in measured if r["framework"] == "mlx"} == {
        "loop", "device", "host batches", "sync"}
    mlx_rows = {r["variant"]: r for r in measured if r["framework"] == "mlx"}
    assert mlx_rows["loop"]["batches"] == mlx_rows["host batches"]["batches"] == "host"  # a CPU
    assert mlx_rows["device"]["batches"] == "resident"
    if HAS_TORCH:
        torch_rows = [r for r in measured if r["framework"] == "torch"]
        assert torch_rows and torch_rows[0]["params"] == measured[0]["params"]
        assert measured[0]["vs_torch"] > 0


def test_generate_speed_smoke(results: Path) -> None:
    data = json.loads((results / "generate_speed_cpu.json").read_text())
    for row in data["results"]:
        assert row["ttft_ms"] > 0 and row["decode_tokens_per_sec"] > 0 and row["new_tokens"] > 0
    rows = {(r["backend"], r["sampling"]): r for r in data["results"]
            if r["background"] == "none"}
    assert {("numpy", "greedy"), ("mlx-cache", "greedy"), ("mlx-naive", "greedy")} <= set(rows)
    assert rows["numpy", "greedy"]["same_tokens_as_mlx"] is True
    assert rows["numpy", "default"]["same_tokens_as_mlx"] is True
    busy = {r["backend"] for r in data["results"] if r["background"] != "none"}
    assert {"numpy", "mlx-cache"} <= busy
    assert set(data["sampler_us"]) == {"greedy", "default"}


def test_train_breakdown_smoke(results: Path) -> None:
    rows = json.loads((results / "train_breakdown_gpu.json").read_text())["results"]
    assert not [r for r in rows if "error" in r]
    variants = {r["variant"]: r for r in rows}
    assert {"step", "no optimizer", "forward + loss", "no attention"} <= set(variants)
    assert variants["step"]["vs_step"] == 1.0
    assert all(r["step_ms"] > 0 and r["tokens_per_sec"] > 0 for r in rows)
    assert ("pytorch step" in variants) == HAS_TORCH
    assert "| step |" in report.render_breakdown(
        json.loads((results / "train_breakdown_gpu.json").read_text()))


def test_tui_startup_smoke(results: Path) -> None:
    row = json.loads((results / "tui_startup_cpu.json").read_text())["results"][0]
    assert 0 < row["child_imports_s"] < row["first_frame_s"] <= row["exit_s"]
    assert isinstance(row["meets_goal"], bool)


def test_tui_speed_smoke(results: Path) -> None:
    data = json.loads((results / "tui_speed_cpu.json").read_text())
    cli, tui = data["results"]
    assert (cli["path"], tui["path"]) == ("cli", "tui") and cli["stories"] == tui["stories"] == 2
    for row in (cli, tui):
        assert row["tokens"] > 0 and row["tokens_per_sec"] > 0 and row["first_token_ms"] > 0
    assert [s["cli"]["tokens"] for s in data["stories"]] == [s["tui"]["tokens"]
                                                             for s in data["stories"]]
    assert tui["vs_cli"] > 0 and tui["status_vs_cli"] > 0 and isinstance(tui["meets_goal"], bool)
    assert tui["status_tokens_per_sec"] > 0 and tui["ui_cpu_ms"] > 0
    assert len(tui["vs_cli_by_repeat"]) == len(tui["load_average_1m_by_repeat"]) == 1


def test_report_renders_every_block(results: Path, tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Title\n\nProse stays.\n\n" + "".join(
        f"<!-- report.py: begin {name} -->\nold\n<!-- report.py: end {name} -->\n\n"
        for name in report.BLOCKS))
    assert report.main(["--doc", str(doc), "--results", str(results), "--check"]) == 1
    assert report.main(["--doc", str(doc), "--results", str(results)]) == 0
    text = doc.read_text()
    assert "Prose stays." in text and "\nold\n" not in text
    assert "Not measured yet" in text  # no GPU result in the smoke folder
    assert "| tiny | 2 |" in text and "| numpy | greedy |" in text
    assert report.main(["--doc", str(doc), "--results", str(results), "--check"]) == 0


def test_committed_performance_doc_matches_the_committed_results() -> None:
    assert report.main(["--check"]) == 0, "run python benchmarks/report.py"


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_reference_computes_the_same_logits() -> None:
    import mlx.core as mx
    import numpy as np
    import torch
    from mlx.utils import tree_flatten

    from benchmarks.torch_reference import TorchStoryModel, count_parameters, load_mlx_weights
    from saga_model import StoryModel
    from saga_model import count_parameters as mlx_parameters
    from saga_model.config import PRESETS, ModelConfig

    for name in ("seed", "4x"):
        assert count_parameters(TorchStoryModel(PRESETS[name])) == \
            mlx_parameters(StoryModel(PRESETS[name]))
    cfg = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "context_length": 64})
    mx.random.seed(0)
    model = StoryModel(cfg)
    reference = TorchStoryModel(cfg)
    load_mlx_weights(reference, dict(tree_flatten(model.parameters())))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 50))
    expected = np.array(model(mx.array(tokens)))
    with torch.no_grad():
        got = reference(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_teach_family_smoke(tiny_run: Path, tmp_path: Path) -> None:
    data = run_benchmark("teach_family.py", tmp_path / "teach.json", "--base", str(tiny_run),
                         "--variants", "defaults", "--extra",
                         "--steps 4 --eval_every 2 --replay 0.25")
    base, taught = data["results"]
    assert base["variant"] == "base" and "steps" not in base
    assert taught["steps"] == 4 and taught["wall_seconds"] > 0 and taught["cpu_seconds"] > 0
    assert taught["family_heldout_loss"] < base["family_heldout_loss"]
    assert "| defaults |" in report.render_teach(data)
