"""Validation loss of training runs side by side, from their ``metrics.jsonl`` files.

A change to how the training loss is computed must train the same model: run the old and
the new code with the same command and seeds, bring back each run's ``metrics.jsonl`` and
summarise them here (validation loss at every evaluation, best loss, median tokens/s):

    python benchmarks/loss_runs.py benchmarks/results/fused_loss_gpu \\
        --experiment "..." --device "..." --command "..."

Each file is named ``<label><seed>.metrics.jsonl`` (``old0``, ``new1``...); the summary is
written to ``summary.json`` in the same folder.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any


def summarise_run(path: Path) -> dict[str, Any]:
    """Validation loss by step, best loss and step, elapsed seconds and median tokens/s."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    evals = [e for e in events if e["event"] == "eval"]
    steps = [e for e in events if e["event"] == "step"]
    end = next((e for e in events if e["event"] == "end"), None)
    if not evals or end is None:
        raise ValueError(f"{path} holds no finished run")
    return {
        "val_loss_by_step": {str(e["step"]): round(e["val_loss"], 4) for e in evals},
        "best_val_loss": round(end["best_val_loss"], 4),
        "best_step": end["best_step"],
        "elapsed_s": round(end["elapsed"], 1),
        "median_tokens_per_sec": round(statistics.median(e["tokens_per_sec"]
                                                         for e in steps[1:] or steps)),
    }


def main(argv: list[str] | None = None) -> int:
    """Summarise every ``*.metrics.jsonl`` of a folder into its ``summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--date", required=True)
    args = parser.parse_args(argv)
    runs: dict[str, Any] = {}
    for path in sorted(args.folder.glob("*.metrics.jsonl")):
        label = path.name.removesuffix(".metrics.jsonl")
        match = re.fullmatch(r"(.*?)(\d+)", label)
        if match is None:
            print(f"skipping {path.name}: not <label><seed>.metrics.jsonl", file=sys.stderr)
            continue
        runs[label] = {"code": match.group(1), "seed": int(match.group(2)),
                       **summarise_run(path)}
    if not runs:
        print(f"no <label><seed>.metrics.jsonl in {args.folder}", file=sys.stderr)
        return 2
    summary = {"experiment": args.experiment, "device": args.device, "command": args.command,
               "date": args.date, "runs": runs}
    out = args.folder / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for label, run in runs.items():
        print(f"{label}: best {run['best_val_loss']} at step {run['best_step']}, "
              f"final {list(run['val_loss_by_step'].values())[-1]}, "
              f"{run['median_tokens_per_sec']:,} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
