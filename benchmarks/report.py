"""Render the tables of ``docs/performance.md`` (and ``docs/teach.md``) from
``benchmarks/results/*.json``.

The document marks each generated block with ``<!-- report.py: begin NAME -->`` and
``<!-- report.py: end NAME -->``; only the text between the markers is replaced, so the prose
around it is kept. Numbers are never copied by hand: rerun a benchmark, then this script.

    python benchmarks/report.py            # rewrite the blocks
    python benchmarks/report.py --check    # exit 1 if the document is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
#: Every document with generated blocks.
DOCS = (DOC, ROOT / "docs" / "teach.md")
RESULTS = ROOT / "benchmarks" / "results"
GPU_COMMAND = ("PYTHONPATH=/tmp/site:. python3 benchmarks/train_throughput.py --device gpu "
               "--out $OUT/train_gpu.json")


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table: thousands separators, about ``digits`` significant figures."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headings) + " |",
             "|" + "|".join("---:" if i else ":---" for i in range(len(headings))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(data: dict[str, Any]) -> str:
    """One sentence: when, on what, with which libraries, under what load."""
    m = data["machine"]
    gpu_info = m.get("gpu")
    gpu = m.get("torch_cuda_device") or (gpu_info.get("device_name")
                                         if isinstance(gpu_info, dict) else None)
    where = f"{gpu} (host CPU: {m['cpu']})" if gpu else f"{m['cpu']}, {m['cpu_count']} cores"
    parts = [f"Measured {data['date'][:10]} on {where}",
             f"MLX {m.get('mlx')} on {m.get('mlx_device')}"]
    if m.get("torch"):
        parts.append(f"PyTorch {m['torch']}")
    if not gpu:
        parts.append(f"MLX BLAS: {m.get('mlx_blas')}")
    load = m.get("load_average_1m")
    if load is not None:
        parts.append(f"1-min load average {load} at start, "
                     f"{data.get('load_average_1m_at_end')} at the end")
    changes = ", with uncommitted changes" if m.get("git_uncommitted_changes") else ""
    return "; ".join(parts) + f" (commit {m.get('git_commit')}{changes})."


def render_train(data: dict[str, Any]) -> str:
    """Tokens/s per shape and batch size, MLX precisions against PyTorch's, with MFU."""
    rows = data["results"]
    measured = [r for r in rows if "tokens_per_sec" in r]
    loop = [r for r in measured if r["variant"] == "loop"]
    columns = sorted({(r["framework"], r["precision"]) for r in loop},
                     key=lambda c: (c[0] != "mlx", c[1] != "float32", c[1]))
    keys = sorted({(r["config"], r["batch"]) for r in rows if r["variant"] == "loop"},
                  key=lambda k: (data["settings"]["configs"].index(k[0]), k[1]))
    by = {(r["config"], r["batch"], r["framework"], r["precision"]): r for r in loop}
    headings = ["shape", "batch"] + [f"{'MLX' if f == 'mlx' else 'PyTorch'} {p} tok/s"
                                     for f, p in columns]
    headings += ["best MLX / best PyTorch", "MFU best MLX", "MFU best PyTorch"]
    table = []
    for config, batch in keys:
        cells = [config, str(batch)]
        for framework, precision in columns:
            row = by.get((config, batch, framework, precision))
            cells.append(_throughput(row) if row else _missing(
                rows, config, batch, framework, precision))
        best = {}
        for framework in ("mlx", "torch"):
            candidates = [r for (c, b, f, _), r in by.items()
                          if (c, b, f) == (config, batch, framework)]
            best[framework] = max(candidates, key=lambda r: r["tokens_per_sec"], default=None)
        ratio = (best["mlx"]["tokens_per_sec"] / best["torch"]["tokens_per_sec"]
                 if best["mlx"] and best["torch"] else None)
        cells += [f"{ratio:.2f}x" if ratio else "-",
                  _pct(best["mlx"]["mfu"]) if best["mlx"] else "-",
                  _pct(best["torch"]["mfu"]) if best["torch"] else "-"]
        table.append(cells)
    parts = [machine_line(data), "", _table(headings, table), ""]
    peak = data["peak_flops"][data["mfu_peak"]]
    parts.append(f"MFU: model FLOPs ({data['flops_formula']}) per second over the "
                 f"{data['mfu_peak'].replace('_', ' ')} peak of {_num(peak / 1e12)} TFLOP/s. "
                 f"Sequence length {rows[0]['seq_len']}; tokens/s of the median timed window "
                 f"(about {data['settings']['timed_seconds']} s of windows per cell, after "
                 f"{data['settings']['warmup']} warm-up steps), with the slowest and fastest "
                 "window in brackets where they differ by more than 10%.")
    diagnostics = [r for r in measured if r["variant"] != "loop"]
    if diagnostics:
        first = diagnostics[0]
        base = by.get((first["config"], first["batch"], "mlx", first["precision"]))
        variants = ([base] if base else []) + diagnostics
        # Results from before TrainingBatches have no "host batches" row: their loop was that.
        gathered = any(r["variant"] == "host batches" for r in diagnostics)
        labels = {"loop": "as grain-train runs it "
                          f"({'TrainingBatches' if gathered else 'host batches'}, async eval)",
                  "device": "batches already on the device",
                  "host batches": "every batch made on the host and uploaded",
                  "sync": "mx.eval after every step"}
        parts += ["", f"Where MLX's time goes ({first['config']}, batch {first['batch']}, "
                  f"{first['precision']}):", "",
                  _table(["variant", "tokens/s", "first step s", "host batch ms"],
                         [[labels.get(r["variant"], r["variant"]), _num(r["tokens_per_sec"]),
                           _num(r["first_step_seconds"]), _num(r["host_batch_ms"])]
                          for r in variants])]
    problems = [r for r in rows if "skipped" in r or "error" in r]
    if problems:
        parts += ["", "Not measured: " + "; ".join(
            f"{r['config']} batch {r['batch']} {r['framework']} {r['precision']} "
            f"({r.get('skipped') or r.get('error')})" for r in problems) + "."]
    return "\n".join(parts)


def _throughput(row: dict[str, Any]) -> str:
    """Median tokens/s, with the slowest-fastest window range when it is wide (over 10%)."""
    text = _num(row["tokens_per_sec"])
    low, high = row.get("tokens_per_sec_range") or (None, None)
    if low and high and high > 1.1 * low:
        text += f" ({_num(low)}-{_num(high)})"
    if row.get("torch_compile") is False:
        text += " (eager)"
    return text


def _missing(rows: list[dict[str, Any]], config: str, batch: int, framework: str,
             precision: str) -> str:
    for r in rows:
        if (r["config"], r["batch"], r["framework"], r["precision"], r["variant"]) == \
                (config, batch, framework, precision, "loop"):
            return "skipped" if "skipped" in r else "error"
    return "-"


def render_generate(data: dict[str, Any]) -> str:
    """TTFT and tokens/s of every backend and prompt length, and the goal check."""
    rows = data["results"]
    table = [[r["backend"], r["sampling"], str(r["prompt_tokens"]), r["background"],
              str(r["new_tokens"]), _num(r["ttft_ms"]), _num(r["decode_tokens_per_sec"]),
              _num(r["overall_tokens_per_sec"]), _num(r.get("same_tokens_as_mlx"))]
             for r in rows]
    parts = [machine_line(data), "",
             _table(["backend", "sampling", "prompt tokens", "other load", "new tokens",
                     "TTFT ms", "decode tok/s", "overall tok/s", "same tokens as MLX"], table),
             ""]
    goals = data["settings"]["goals"]

    def find(backend: str, prompt: int, background: str) -> dict[str, Any] | None:
        return next((r for r in rows if (r["backend"], r["sampling"], r["prompt_tokens"],
                                         r["background"]) ==
                     (backend, "greedy", prompt, background)), None)

    for row in rows:
        if (row["backend"], row["sampling"], row["background"]) != ("numpy", "greedy", "none"):
            continue
        mlx = find("mlx-cache", row["prompt_tokens"], "none")
        speedup = (f", {row['decode_tokens_per_sec'] / mlx['decode_tokens_per_sec']:.1f}x "
                   "the MLX cache loop" if mlx else "")
        verdict = "met" if row.get("meets_goal") else "not met"
        parts.append(f"- Prompt of {row['prompt_tokens']} tokens: the NumPy decoder decodes "
                     f"{_num(row['decode_tokens_per_sec'])} tokens/s{speedup}, first token "
                     f"after {_num(row['ttft_ms'])} ms; goal (>= "
                     f"{_num(goals['decode_tokens_per_sec'])} tokens/s, TTFT < "
                     f"{_num(goals['ttft_ms'])} ms) {verdict}.")
    for background in dict.fromkeys(r["background"] for r in rows if r["background"] != "none"):
        busy = [r for r in rows if r["background"] == background]
        parts.append(f"- With {background} beside it (prompt {busy[0]['prompt_tokens']}): " +
                     ", ".join(f"{r['backend']} {_num(r['decode_tokens_per_sec'])} tokens/s"
                               for r in busy) + ".")
    sampler = data.get("sampler_us")
    if sampler:
        parts.append("- One `sample_token` call takes " + ", ".join(
            f"{_num(v)} µs ({k} options)" for k, v in sampler.items()) + ".")
    parts += ["", "Settings: " + data["settings"]["model"] + f"; {data['settings']['runs']} "
              "timed runs per cell (median) after one warm-up run."]
    return "\n".join(parts)


def render_tui(data: dict[str, Any]) -> str:
    """Launch-to-first-frame time of grain-tui and the goal check."""
    row = data["results"][0]
    table = [[_num(row["first_frame_s"]), f"{_num(row['min_first_frame_s'])} - "
              f"{_num(row['max_first_frame_s'])}", _num(row["child_imports_s"]),
              _num(row["bare_python_s"]), "met" if row["meets_goal"] else "not met"]]
    goal = data["settings"]["goal_seconds"]
    return "\n".join([
        machine_line(data), "",
        _table(["launch to first frame s (median)", "range s", "of which importing tui.app s",
                "bare `python -c pass` s", f"goal < {_num(goal)} s"], table), "",
        f"{row['runs']} cold launches after one warm-up launch; empty config and data "
        "folders; headless, 120x40."])


def render_tui_speed(data: dict[str, Any]) -> str:
    """The same stories shown by the TUI and printed by the CLI: first token and tokens/s."""
    cli, tui = data["results"]
    table = [[row["path"], str(row["stories"]), _num(row["first_token_ms"]),
              _num(row["tokens_per_sec"]), _num(row.get("status_tokens_per_sec")),
              _num(row.get("ui_cpu_ms")), _num(row.get("vs_cli")), _num(row.get("status_vs_cli"))]
             for row in (cli, tui)]
    settings = data["settings"]
    by_repeat = ", ".join(f"{_num(ratio)} (load {_num(load)})" for ratio, load in zip(
        tui["vs_cli_by_repeat"], tui["load_average_1m_by_repeat"], strict=True))
    return "\n".join([
        machine_line(data), "",
        _table(["path", "stories", "first token ms", "tokens/s (CLI: --stats; TUI: on screen)",
                "tokens/s in the status line", "app thread CPU ms a story", "vs CLI",
                "status line vs CLI"], table), "",
        f"Goal: the TUI shows a story at least {_num(settings['goal_ratio'])} as fast as the "
        f"CLI prints it (tokens / time from the key press to the frame that shows the last "
        f"piece, against `grain-generate --stats`): {'met' if tui['meets_goal'] else 'not met'}. "
        f"Medians over {settings['repeats']} x {len(settings['seeds'])} stories, each seed told "
        f"by both paths one after the other, {settings['max_tokens']} tokens at most, 80x24, "
        f"every frame turned into terminal bytes; vs CLI by repeat: {by_repeat}."])


def render_breakdown(data: dict[str, Any]) -> str:
    """Milliseconds per training step of each ablation of the MLX step, per batch size."""
    settings = data["settings"]
    errors = any("error" in r for r in data["results"])
    rows = [[str(r["batch"]), r["variant"], _num(r.get("step_ms")), _num(r.get("vs_step")),
             _num(r.get("tokens_per_sec")), *([r.get("error", "")] if errors else [])]
            for r in data["results"]]
    headings = ["batch", "variant", "ms per step", "x the step", "tokens/s"]
    return "\n".join([
        machine_line(data), "",
        _table(headings + (["error"] if errors else []), rows), "",
        f"Shape `{settings['config']}`, sequences of {settings['seq_len']} tokens, "
        f"{settings['precision']}; batches already on the device; median of about "
        f"{_num(settings['timed_seconds'])} s of timed windows after {settings['warmup']} "
        "warm-up steps.", *_render_kernels(data.get("kernels", {}),
                                           f"batch {max(settings['batch_sizes'])}:")])


def _render_kernels(kernels: dict[str, list[dict[str, Any]]], prefix: str, top: int = 12
                    ) -> list[str]:
    """The longest GPU kernels of each profiled variant named with ``prefix``, per step."""
    parts = []
    for variant, rows in kernels.items():
        if not variant.startswith(prefix):
            continue
        table = [[r["kernel"].replace("|", "/")[:90], _num(r["ms_per_step"]),
                  _num(r["calls_per_step"])] for r in rows[:top + 1] if "kernel" in r]
        parts += ["", f"GPU kernels of {variant} (CUPTI through torch.profiler, 10 steps):", "",
                  _table(["kernel", "ms per step", "calls per step"], table)]
    return parts


def render_prepare(data: dict[str, Any]) -> str:
    """MB/s and peak memory of ``prepare_data`` (cold, cached, one worker), the per-story cost
    of each step, and the extrapolation to TinyStories V2."""
    m, corpus = data["machine"], data["corpus"]
    rows = []
    for name, what in (("cold", "from scratch"), ("cached", "again (cache hit)"),
                       ("serial", "from scratch, one worker")):
        run = data.get(name)
        if run:
            peak = run["peak_rss_mb"]
            rows.append([f"{name}: {what}", _num(run["bytes"] / 1e6), str(run["workers"]),
                         _num(run["seconds"]), _num(run["mb_per_s"]),
                         _num(run.get("preparing_mb_per_s")), _num(peak["main"]),
                         _num(peak["largest_worker"]), _num(peak["total"])])
    cold = data["cold"]
    phases = ", ".join(f"{label} {_num(s)} s" for label, s in cold["phases_s"].items())
    peak_gb = cold["peak_rss_mb"]["total"] / 1024
    changes = ", with uncommitted changes" if m.get("git_uncommitted_changes") else ""
    lines = [
        f"Measured {data['date'][:10]} on {m['cpu']}, {m['cpu_count']} cores, "
        f"{_num(m['ram_gb'])} GB RAM; tokenizers {m['tokenizers']}; 1-min load average "
        f"{m['load_average_1m']} at start, {m.get('load_average_1m_at_end')} at the end "
        f"(commit {m['git_commit']}{changes}).",
        "",
        f"Synthetic corpus: {_num(corpus['bytes'] / 1e6)} MB, {corpus['train_stories']:,} + "
        f"{corpus['valid_stories']:,} stories; {cold['train_tokens']:,} training tokens.",
        "",
        _table(["run", "MB", "workers", "seconds", "MB/s", "MB/s preparing step",
                "peak RSS main MB", "largest worker MB", "whole tree MB"], rows),
        "",
        f"Cold run by step: {phases}. Peak memory of the whole process tree: "
        f"{peak_gb:.2f} GB for a {corpus['bytes'] / 1e9:.1f} GB corpus (goal < 1 GB: "
        f"{'met' if peak_gb < 1 else 'not met'}).",
    ]
    steps = data.get("steps")
    if steps:
        base = steps.get("baseline_ms_per_story", {})
        step_rows = [[f"`{step}`", _num(ms), _num(base.get(step))]
                     for step, ms in steps["ms_per_story"].items()]
        lines += ["", f"CPU milliseconds per story and step, one thread, on {steps['stories']:,} "
                  f"real stories of {steps['mean_chars']} characters on average (the "
                  "baseline column: the labeller before its optimisation):", "",
                  _table(["step", "ms per story", "baseline ms"], step_rows)]
    extra = data.get("extrapolation")
    if extra:
        minutes = extra["minutes"]
        cores = sorted(minutes, key=lambda k: int(k.split("_")[0]))
        lines += ["", f"Extrapolated to TinyStories V2 ({_num(extra['tinystories_v2_mb'])} MB): "
                  + ", ".join(f"{_num(minutes[k])} minutes with {k.split('_')[0]} cores"
                              for k in cores)
                  + f" ({extra['per_core_mb_per_s']} MB/s per core, parallel efficiency "
                  f"{extra['parallel_efficiency']}; assumptions: {extra['assumptions']}). Goal "
                  f"< 10 minutes on a laptop: "
                  f"{'met' if minutes[cores[-1]] < 10 else 'not met'} by this estimate."]
    return "\n".join(lines)


def render_blas(data: dict[str, Any]) -> str:
    """Matrix-product GFLOP/s and training steps/s of MLX with each BLAS on the CPU."""
    shapes = {s["name"]: s for s in data["settings"]["shapes"]}
    rows = [[r["blas"], r.get("error") or r.get("blas_in_use", ""), _num(r.get("gemm_gflops")),
             _num(r.get("tiny_steps_per_sec")), _num(r.get("seed_steps_per_sec")),
             _num(r.get("seed_speedup_vs_bundled")),
             ", ".join(str(x) for x in r.get("load_average_1m", []))]
            for r in data["results"]]
    tiny, seed = shapes["tiny"], shapes["seed"]
    return "\n".join([
        machine_line(data), "",
        _table(["BLAS", "loaded", "512² GEMM GFLOP/s", "tiny steps/s", "seed steps/s",
                "seed x bundled", "load average at start"], rows), "",
        f"Training steps of `grain-train`: tiny preset at batch {tiny['batch_size']} x "
        f"{tiny['context']} tokens, the shipped model's shape at batch {seed['batch_size']} x "
        f"{seed['context']}; median of {data['settings']['rounds']} interleaved rounds, each "
        "BLAS in a fresh process."])


def render_teach(data: dict[str, Any]) -> str:
    """The family set before and after teaching: losses, names in new stories, time."""
    rows = [[r["variant"], r.get("flags") or "-",
             f"{r['steps']} (best {r['best_step']})" if "steps" in r else "-",
             _num(r.get("wall_seconds")), _num(r.get("cpu_seconds")),
             _num(r["family_heldout_loss"]), _num(r.get("tinystories_loss")),
             _pct(r["asked_both_names"]), _pct(r["asked_granny_bee"]),
             _pct(r["asked_thistle_farm"]), _pct(r["unprompted_any_family_term"])]
            for r in data["results"]]
    s = data["settings"]
    return "\n".join([
        machine_line(data), "",
        _table(["model", "flags", "steps", "wall s", "CPU s", "family held-out loss",
                "TinyStories loss", "asked: both names", "asked: + Granny Bee",
                "asked: + Thistle Farm", "unprompted: any family name"], rows), "",
        f"Losses in nats/token on the 8 held-out family stories and on "
        f"{s['tinystories_stories'] or 'all'} TinyStories validation stories (forgetting). "
        f"Name shares over {s['stories']} stories of at most {s['max_tokens']} tokens each, "
        f"asked for (characters {', '.join(s['asked'])}) or with no setting at all. Wall time "
        "is the whole `grain-train` command (data, stories told for replay, training, "
        "evaluations, saving)."])


BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str], str]] = {
    "train_throughput_gpu": ("train_throughput_gpu.json", render_train, GPU_COMMAND),
    "train_throughput_cpu": ("train_throughput_cpu.json", render_train,
                             "python benchmarks/train_throughput.py --device cpu"),
    "generate_speed_cpu": ("generate_speed_cpu.json", render_generate,
                           "python benchmarks/generate_speed.py"),
    "tui_startup_cpu": ("tui_startup_cpu.json", render_tui,
                        "python benchmarks/tui_startup.py"),
    "tui_speed_cpu": ("tui_speed_cpu.json", render_tui_speed, "python benchmarks/tui_speed.py"),
    "train_breakdown_gpu": ("train_breakdown_gpu.json", render_breakdown,
                            "PYTHONPATH=/tmp/site:. python3 benchmarks/train_breakdown.py"),
    "prepare_scale_cpu": ("prepare_scale.json", render_prepare,
                          "python benchmarks/prepare_scale.py --size_mb 2048"),
    "blas_choice_cpu": ("blas_choice_cpu.json", render_blas, "python benchmarks/blas_choice.py"),
    "teach_family_gpu": ("teach_family_gpu.json", render_teach,
                         "PYTHONPATH=/tmp/site:. python3 benchmarks/teach_family.py "
                         "--variants defaults --out $OUT/teach_family_gpu.json"),
    "teach_family_variants_gpu": ("teach_family_variants_gpu.json", render_teach,
                                  "PYTHONPATH=/tmp/site:. python3 benchmarks/teach_family.py "
                                  "--variants 'no replay,replay 2,lr 2e-4,lr 1e-3,dropout 0.1' "
                                  "--jobs 6 --out $OUT/teach_family_variants_gpu.json"),
    "teach_family_cpu": ("teach_family_cpu.json", render_teach,
                         "python benchmarks/teach_family.py --variants defaults"),
}


def render_block(name: str, results: Path) -> str:
    """The generated text of one block (a note with the command when there is no result)."""
    filename, render, command = BLOCKS[name]
    path = results / filename
    if not path.is_file():
        return f"*Not measured yet: run `{command}` and save its JSON as `{path.name}`.*"
    return render(json.loads(path.read_text(encoding="utf-8")))


def update(text: str, results: Path) -> str:
    """``text`` with every marked block regenerated from ``results``."""
    for name in BLOCKS:
        pattern = re.compile(rf"(<!-- report.py: begin {name} -->\n).*?(<!-- report.py: end "
                             rf"{name} -->)", re.DOTALL)
        if pattern.search(text):
            block = render_block(name, results)
            text = pattern.sub(lambda m, b=block: f"{m.group(1)}{b}\n{m.group(2)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with --check, verify) the generated blocks of the document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", type=Path, action="append",
                        help=f"the document (default: {', '.join(d.name for d in DOCS)})")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--check", action="store_true", help="fail if the doc is out of date")
    args = parser.parse_args(argv)
    stale = []
    for doc in args.doc or DOCS:
        text = doc.read_text(encoding="utf-8")
        updated = update(text, args.results)
        if updated == text:
            continue
        if args.check:
            stale.append(doc)
        else:
            doc.write_text(updated, encoding="utf-8")
            print(f"updated {doc}")
    for doc in stale:
        print(f"{doc} is out of date: run python benchmarks/report.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
