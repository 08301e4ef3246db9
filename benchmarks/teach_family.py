"""Teach it your stories: fine-tune a model on the family set and measure what it learned.

Each variant runs the real ``grain-train --init_from BASE --data_dir tests/fixtures/family/train``
in a fresh process (its wall time is recorded with the load average), then the base model and
every result are measured the same way:

* loss (nats/token) on the 8 held-out family stories (``tests/fixtures/family/heldout``);
* loss on the first ``--ts_stories`` stories of a TinyStories validation file (forgetting);
* how often the family's names and places appear in new stories: asked for (``characters
  Juniper, Biscuit``; does the rest of the world — Granny Bee, Thistle Farm — come along?) and
  unprompted (no setting at all).

Variants run ``--jobs`` at a time, each fine-tune and each measurement in its own process;
the CPU seconds of every fine-tune are recorded too (on a shared machine the wall time depends
on the load; the CPU time much less).

    python benchmarks/teach_family.py --tinystories /path/to/TinyStories-valid.txt
    python benchmarks/teach_family.py --variants defaults --jobs 1   # the wall time, alone
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, format_table, log, machine_info, write_result

FAMILY = ROOT / "tests" / "fixtures" / "family"
#: The family's names and places, as the stories spell them.
FAMILY_TERMS = ("Juniper", "Biscuit", "Granny Bee", "Thistle Farm")
ASKED = ("Juniper", "Biscuit")
#: name -> extra grain-train flags. "defaults" is what ``--init_from`` does on its own.
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "no replay": ["--replay", "0"],
    "replay 2": ["--replay", "2"],
    "lr 2e-4": ["--lr", "2e-4"],
    "lr 1e-3": ["--lr", "1e-3"],
    "dropout 0.1": ["--dropout", "0.1"],
}


def _first_stories(path: Path, count: int, folder: Path) -> Path:
    """A file holding the first ``count`` stories of a TinyStories-format file."""
    from saga_model.data import SEPARATOR, split_stories

    stories = split_stories(path.read_text(encoding="utf-8"))[:count or None]
    target = folder / "tinystories-subset.txt"
    target.write_text(f"\n{SEPARATOR}\n".join(s.strip() for s in stories) + "\n")
    return target


def _share(stories: list[str], terms: tuple[str, ...], every: bool) -> float:
    hits = [(all if every else any)(term in story for term in terms) for story in stories]
    return sum(hits) / max(1, len(hits))


def measure_model(path: Path | str, tinystories: Path | None, stories: int,
                  max_tokens: int) -> dict[str, Any]:
    """Held-out family loss, TinyStories loss and family-name shares of one model."""
    from saga_model.checkpoint import load_model
    from saga_model.evaluate import text_loss
    from saga_model.generate import SamplingOptions, StoryRequest, tell_story

    model, tokenizer = load_model(path)
    row: dict[str, Any] = {"family_heldout_loss": text_loss(model, tokenizer,
                                                            FAMILY / "heldout").loss}
    if tinystories is not None:
        row["tinystories_loss"] = text_loss(model, tokenizer, tinystories).loss

    def tell(request: StoryRequest) -> list[str]:
        return [tell_story(model, tokenizer, request,
                           SamplingOptions(max_tokens=max_tokens, seed=i)) for i in range(stories)]

    asked = tell(StoryRequest(characters=ASKED))
    unprompted = tell(StoryRequest())
    row.update({
        "asked_both_names": _share(asked, ASKED, every=True),
        "asked_granny_bee": _share(asked, ("Granny Bee",), every=True),
        "asked_thistle_farm": _share(asked, ("Thistle Farm",), every=True),
        "unprompted_any_family_term": _share(unprompted, FAMILY_TERMS, every=False),
        "unprompted_juniper": _share(unprompted, ("Juniper",), every=True),
        "sample_asked": asked[0][:400],
        "sample_unprompted": unprompted[0][:400],
    })
    return row


def _run(command: list[str], cache: Path) -> tuple[str, float, float]:
    """Run a command in a fresh process: (stdout, wall seconds, CPU seconds)."""
    env = {**os.environ, "GRAIN_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{shlex.join(command)} failed: {err.read().strip()[-500:]}")
        return out.read(), wall, usage.ru_utime + usage.ru_stime


def measure(path: Path | str, args: argparse.Namespace, cache: Path,
            subset: Path | None) -> dict[str, Any]:
    """:func:`measure_model` in a fresh process."""
    command = [sys.executable, __file__, "--measure", str(path), "--stories",
               str(args.stories), "--max_tokens", str(args.max_tokens)]
    if subset is not None:
        command += ["--tinystories", str(subset), "--ts_stories", "0"]
    return json.loads(_run(command, cache)[0])


def fine_tune(base: str, flags: list[str], out: Path, cache: Path) -> dict[str, Any]:
    """Run grain-train in a fresh process; its wall and CPU time, load and how the run ended."""
    command = [sys.executable, "-m", "saga_model.cli.train", "--init_from", base, "--data_dir",
               str(FAMILY / "train"), "--output_dir", str(out), "--quiet", *flags]
    load = os.getloadavg()[0]
    _, wall, cpu = _run(command, cache)
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    end = next(e for e in events if e["event"] == "end")
    return {"wall_seconds": wall, "cpu_seconds": cpu, "load_average_1m_before": round(load, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "steps": end["step"], "best_step": end["best_step"],
            "best_val_loss": end["best_val_loss"], "stop_reason": end["stop_reason"],
            "train_seconds": end["elapsed"], "flags": shlex.join(flags)}


def main() -> None:
    """Measure the base model, fine-tune every variant, measure each, print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="shipped", help="the model to start from")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--tinystories", type=Path,
                        help="a TinyStories validation file (measurement only)")
    parser.add_argument("--ts_stories", type=int, default=200,
                        help="stories of --tinystories to score (0 = all)")
    parser.add_argument("--stories", type=int, default=20, help="generated per measurement")
    parser.add_argument("--max_tokens", type=int, default=250)
    parser.add_argument("--extra", default="", help="flags added to every grain-train run")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (for tests): pass a tiny --base")
    parser.add_argument("--jobs", type=int, default=1, help="variants run at the same time")
    parser.add_argument("--out", default=str(RESULTS / "teach_family_cpu.json"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.stories, args.max_tokens = 2, 20
    if args.measure:
        print(json.dumps(measure_model(args.measure, args.tinystories, args.stories,
                                       args.max_tokens)))
        return
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    extra = shlex.split(args.extra)
    with tempfile.TemporaryDirectory(prefix="teach-") as tmp:
        folder = Path(tmp)
        subset = (_first_stories(args.tinystories, args.ts_stories, folder)
                  if args.tinystories else None)
        from saga_model.finetune import load_base

        base_path = load_base(args.base).weights_file.parent

        def variant(name: str) -> dict[str, Any]:
            if name == "base":
                row = {"variant": name, **measure(base_path, args, folder / "cache", subset)}
            else:
                out = folder / name.replace(" ", "-")
                run = fine_tune(args.base, [*VARIANTS[name], *extra], out, folder / name)
                row = {"variant": name, **run, **measure(out, args, folder / name, subset)}
            log(f"{name}: {json.dumps(row)[:400]}")
            return row

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(variant, ["base", *names]))
    print(format_table(rows, [
        ("variant", "variant"), ("steps", "steps"), ("wall_seconds", "wall s"),
        ("cpu_seconds", "CPU s"),
        ("family_heldout_loss", "family held-out"), ("tinystories_loss", "TinyStories"),
        ("asked_granny_bee", "asked: Granny Bee"), ("asked_thistle_farm", "asked: Thistle Farm"),
        ("unprompted_any_family_term", "unprompted: family")]))
    settings = {"base": args.base, "variants": {n: VARIANTS[n] for n in names},
                "extra_flags": extra, "stories": args.stories, "max_tokens": args.max_tokens,
                "jobs": args.jobs, "env": {k: v for k, v in os.environ.items()
                                           if k.startswith(("MKL_", "GRAIN_BLAS", "OMP_"))},
                "tinystories_file": str(args.tinystories) if args.tinystories else None,
                "tinystories_stories": args.ts_stories if args.tinystories else 0,
                "smoke": args.smoke, "family_terms": FAMILY_TERMS, "asked": ASKED}
    notes = ["Losses are nats/token on unconditioned stories (as grain-train validates). "
             "Name shares count stories containing the exact spelling."]
    path = write_result(args.out, "teach_family", settings, rows, machine_info(), notes)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
