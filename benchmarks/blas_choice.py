"""Which BLAS should MLX use on a Linux CPU? Training steps/s with each one, in the same run.

Every candidate runs in a fresh process (the BLAS must be loaded before MLX), chosen through
``GRAIN_BLAS`` (see ``saga_model/_blas.py``): MLX's bundled reference BLAS, every system
OpenBLAS found, MKL from the ``mkl`` wheel (with its default threading and single-threaded),
and any ``--library NAME=PATH`` given (its folder goes on ``LD_LIBRARY_PATH`` so the libraries
it needs load too: for example an OpenBLAS unpacked from a .deb without installing it). Each
process measures a 512x512 float32 matrix product and the training step of ``grain-train`` for
the tiny preset and the shipped model's shape; the rounds interleave the candidates so a
change in machine load hits them all alike, and the median round is reported.

    python benchmarks/blas_choice.py                # ~3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, format_table, log, machine_info, median, write_result

#: (name, preset, batch size, context length) of the measured training steps (the reference
#: BLAS takes over a minute for one step of the seed shape at a fine-tune's batch of 8).
SHAPES = (("tiny", "tiny", 16, 128), ("seed", "seed", 2, 512))


def _time_steps(preset: str, batch_size: int, context: int, seconds: float) -> float:
    """Steady-state training steps per second of one shape."""
    import mlx.core as mx
    import numpy as np

    from saga_model.config import PRESETS, ModelConfig, TrainConfig
    from saga_model.model import StoryModel
    from saga_model.train import build_train_step, make_optimizer

    cfg = ModelConfig.from_dict({**PRESETS[preset].to_dict(), "context_length": context})
    model = StoryModel(cfg)
    optimizer = make_optimizer(TrainConfig(steps=1000, warmup_steps=10))
    optimizer.init(model.trainable_parameters())
    step, state = build_train_step(model, optimizer, 1.0)
    rng = np.random.default_rng(0)
    batch = mx.array(rng.integers(0, cfg.vocab_size, (batch_size, context + 1)), mx.int32)
    mx.eval(step(batch), state)
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < seconds:
        mx.eval(step(batch), state)
        done += 1
    return done / (time.perf_counter() - start)


def _gemm_gflops(size: int = 512, repeats: int = 20) -> float:
    import mlx.core as mx

    a = mx.random.normal((size, size))
    mx.eval(a @ a)
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ a)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def worker(seconds: float) -> None:
    """Measure in this process (its BLAS was chosen by the environment) and print JSON."""
    from saga_model import blas_in_use  # first: it loads the BLAS before mlx

    row: dict[str, Any] = {"blas_in_use": blas_in_use(), "gemm_gflops": _gemm_gflops()}
    for name, preset, batch, context in SHAPES:
        row[f"{name}_steps_per_sec"] = _time_steps(preset, batch, context, seconds)
    print(json.dumps(row))


def candidates(extra: list[str]) -> list[tuple[str, dict[str, str]]]:
    """(name, environment changes) of every BLAS to measure."""
    from saga_model._blas import mkl_paths, openblas_paths

    found: list[tuple[str, dict[str, str]]] = [("bundled", {"GRAIN_BLAS": "bundled"})]
    found += [(f"openblas {path}", {"GRAIN_BLAS": path}) for path in openblas_paths()]
    if mkl_paths():
        found += [("mkl", {"GRAIN_BLAS": "mkl"}),
                  ("mkl sequential", {"GRAIN_BLAS": "mkl", "MKL_THREADING_LAYER": "SEQUENTIAL"})]
    for item in extra:
        name, _, path = item.partition("=")
        folder = str(Path(path).parent)
        library_path = os.pathsep.join(filter(None, [folder, os.environ.get("LD_LIBRARY_PATH")]))
        found.append((name, {"GRAIN_BLAS": path, "LD_LIBRARY_PATH": library_path}))
    return found


def measure(name: str, changes: dict[str, str], seconds: float) -> dict[str, Any]:
    """One candidate's figures, from a fresh process."""
    env = {**os.environ, **changes, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("GRAIN_NO_OPENBLAS", None)
    load = os.getloadavg()[0]
    result = subprocess.run([sys.executable, __file__, "--worker", "--seconds", str(seconds)],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        return {"blas": name, "error": result.stderr.strip().splitlines()[-1:]}
    return {"blas": name, "load_average_1m": round(load, 2), **json.loads(result.stdout)}


def main() -> None:
    """Measure every candidate in interleaved rounds, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per shape")
    parser.add_argument("--library", action="append", default=[], metavar="NAME=PATH",
                        help="also measure this library")
    parser.add_argument("--smoke", action="store_true", help="one short round (for tests)")
    parser.add_argument("--out", default=str(RESULTS / "blas_choice_cpu.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seconds)
        return
    rounds, seconds = (1, 0.2) if args.smoke else (args.rounds, args.seconds)
    todo = candidates(args.library)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in todo}
    for round_ in range(rounds):
        for name, changes in todo:
            row = measure(name, changes, seconds)
            log(f"round {round_ + 1}: {json.dumps(row)}")
            runs[name].append(row)
    rows = []
    for name, measured in runs.items():
        good = [r for r in measured if "error" not in r]
        if not good:
            rows.append(measured[0])
            continue
        row = {"blas": name, "blas_in_use": good[0]["blas_in_use"], "rounds": len(good),
               "load_average_1m": [r["load_average_1m"] for r in good]}
        for key in ["gemm_gflops", *(f"{s[0]}_steps_per_sec" for s in SHAPES)]:
            row[key] = median([r[key] for r in good])
        rows.append(row)
    bundled = next((r for r in rows if r["blas"] == "bundled" and "error" not in r), None)
    for row in rows:
        if bundled and "error" not in row:
            row["seed_speedup_vs_bundled"] = (row["seed_steps_per_sec"]
                                              / bundled["seed_steps_per_sec"])
    print(format_table(rows, [("blas", "BLAS"), ("gemm_gflops", "GEMM GFLOP/s"),
                              ("tiny_steps_per_sec", "tiny steps/s"),
                              ("seed_steps_per_sec", "seed steps/s"),
                              ("seed_speedup_vs_bundled", "seed x bundled")]))
    settings = {"rounds": rounds, "seconds": seconds, "smoke": args.smoke,
                "shapes": [dict(zip(("name", "preset", "batch_size", "context"), s, strict=True))
                           for s in SHAPES], "libraries": args.library}
    notes = ["Median over interleaved rounds; each candidate in a fresh process "
             "(GRAIN_BLAS picks it). The 1-minute load average before each run is recorded."]
    path = write_result(args.out, "blas_choice", settings, rows, machine_info(), notes)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
