"""Run several grain-train configurations at once on one GPU and keep the best model.

Used on the device machine to train the shipped model (see docs/training-the-default-model.md):

    python tools/device/sweep.py --data_dir .devdata --work /root/runs --out "$OUT" \
        --common "--steps 3000 --batch_size 64" --run a "--lr 2e-3" --run b "--lr 3e-3"

Each run is a plain ``grain-train`` process; the summary (best validation loss, bits per byte,
steps, wall time, tokens/s) is printed and written to ``OUT/sweep.json``, and the best run's
model folder is copied to ``OUT/model``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def read_events(run_dir: Path) -> list[dict]:
    """All events a run has logged so far."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(name: str, args: str, run_dir: Path, code: int, wall: float) -> dict:
    """Figures of one finished run."""
    events = read_events(run_dir)
    evals = [e for e in events if e["event"] == "eval"]
    steps = [e for e in events if e["event"] == "step"]
    best = min(evals, key=lambda e: e["val_loss"]) if evals else None
    averaged = [e for e in evals if e.get("ema_val_loss") is not None]
    best_ema = min(averaged, key=lambda e: e["ema_val_loss"]) if averaged else None
    end = next((e for e in reversed(events) if e["event"] == "end"), {})
    rates = sorted(e["tokens_per_sec"] for e in steps[1:])  # the first window includes compiling
    return {
        "name": name, "args": args, "exit_code": code, "wall_seconds": round(wall, 1),
        "steps": end.get("step"), "stop_reason": end.get("stop_reason"),
        "best_val_loss": best and round(best["val_loss"], 4),
        "best_val_bpb": best and round(best["val_bpb"], 4), "best_step": best and best["step"],
        "last_val_loss": evals[-1]["val_loss"] if evals else None,
        "best_ema_val_loss": best_ema and round(best_ema["ema_val_loss"], 4),
        "best_ema_val_bpb": best_ema and round(best_ema["ema_val_bpb"], 4),
        "best_ema_step": best_ema and best_ema["step"],
        "median_tokens_per_sec": rates[len(rates) // 2] if rates else None,
        "train_seconds": end.get("elapsed"), "tokens_seen": end.get("tokens_seen"),
        "evals": [(e["step"], round(e["val_loss"], 4)) for e in evals],
    }


def main() -> None:
    """Launch the runs, wait, summarise, keep the best."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--work", required=True, help="folder for the run folders")
    parser.add_argument("--out", required=True, help="folder for sweep.json and the best model")
    parser.add_argument("--common", default="", help="flags given to every run")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "FLAGS"),
                        required=True)
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, flags in args.run:
        run_dir = work / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        cmd = [sys.executable, "-m", "saga_model.cli.train", "--data_dir", args.data_dir,
               "--output_dir", str(run_dir), "--quiet",
               *shlex.split(args.common), *shlex.split(flags)]
        log = open(run_dir / "train.log", "w")  # noqa: SIM115 (closed when the run ends)
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        env=os.environ.copy()), time.time(), flags, log)
        print(f"started {name}: {' '.join(cmd[3:])}", flush=True)
    results = []
    for name, (proc, started, flags, log) in procs.items():
        code = proc.wait()
        log.close()
        results.append(summarise(name, flags, work / name, code, time.time() - started))
        print((work / name / "train.log").read_text()[-400:], flush=True)
    results.sort(key=lambda r: (r["best_val_loss"] is None, r["best_val_loss"]))
    print(f"{'run':<10} {'best val':>9} {'bpb':>7} {'at step':>8} {'steps':>6} "
          f"{'tok/s':>10} {'wall s':>7}  flags")
    for r in results:
        print(f"{r['name']:<10} {r['best_val_loss']!s:>9} {r['best_val_bpb']!s:>7} "
              f"{r['best_step']!s:>8} {r['steps']!s:>6} {r['median_tokens_per_sec'] or 0:>10,.0f} "
              f"{r['wall_seconds']:>7}  {r['args']}")
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    best = results[0]
    if best["best_val_loss"] is not None:
        src = work / best["name"]
        dest = out / "model"
        dest.mkdir(exist_ok=True)
        for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.jsonl"):
            if (src / name).exists():
                shutil.copy(src / name, dest / name)
        print(f"best: {best['name']} -> {dest}")


if __name__ == "__main__":
    main()
