"""Data-parallel scaling on NVIDIA GPUs: the same grain-train run on 1 GPU and on N (NCCL).

Runs on the device machine from the project root, with MLX's CUDA build importable (e.g.
unpacked into /tmp/site by tools/device/install_mlx_cuda.sh) and the stories in .devdata/:

    export PYTHONPATH=/tmp/site:. GRAIN_CACHE_DIR=/root/grain-cache
    python3 tools/device/distributed_scaling.py --data_dir .devdata --work /root/scaling \\
        --out "$OUT"

Both runs use the same flags and global batch (``--batch_size`` is split over the ranks). The
N-GPU run is started with MLX's launcher, ``--backend nccl -n N``; the launcher gives each rank
one GPU through CUDA_VISIBLE_DEVICES. Without an ``mlx.launch`` script on PATH the launcher
is run from its module. The environment is passed on unchanged (NCCL_NVLS_ENABLE and the like
stay as they are). Tokens/s is the median over the logged windows after the first (which
includes compiling); it counts the tokens of all ranks. The summary is printed and written to
``OUT/distributed_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweep import read_events, summarise

DEFAULT_FLAGS = "--config seed --batch_size 128 --steps 300 --eval_every 0 --save_every 0"


def launcher() -> list[str]:
    """MLX's launcher: the ``mlx.launch`` script if there is one, else its module."""
    script = shutil.which("mlx.launch")
    if script:
        return [script]
    return [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]


def preflight(gpus: int) -> dict:
    """What this machine offers: MLX version, default device, NCCL support, visible GPUs."""
    probe = ("import json, mlx.core as mx; print(json.dumps({'mlx': mx.__version__, "
             "'device': str(mx.default_device()), 'cuda': mx.cuda.is_available(), "
             "'nccl': mx.distributed.is_available('nccl')}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    info = json.loads(result.stdout)
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    info["gpus_listed"] = [line for line in smi.stdout.splitlines() if line.startswith("GPU")]
    info["NCCL_NVLS_ENABLE"] = os.environ.get("NCCL_NVLS_ENABLE")
    print(json.dumps(info, indent=2), flush=True)
    if not (info["cuda"] and info["nccl"]):
        sys.exit("MLX here has no CUDA or no NCCL backend: nothing to measure")
    if len(info["gpus_listed"]) < gpus:
        sys.exit(f"need {gpus} GPUs, nvidia-smi lists {len(info['gpus_listed'])}")
    return info


def train(name: str, prefix: list[str], flags: list[str], run_dir: Path, timeout: float) -> dict:
    """One grain-train run (killed with its launcher's whole process group past ``timeout``)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    command = [*prefix, sys.executable, "-m", "saga_model.cli.train", "--output_dir",
               str(run_dir), "--quiet", *flags]
    print(f"{name}: {shlex.join(command)}", flush=True)
    started = time.time()
    with open(run_dir.parent / f"{name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    wall = time.time() - started
    print((run_dir.parent / f"{name}.log").read_text()[-1500:], flush=True)
    summary = summarise(name, shlex.join(flags), run_dir, code, wall)
    events = read_events(run_dir)
    steps = [e for e in events if e["event"] == "step"]
    summary["final_train_loss"] = steps[-1]["loss"] if steps else None
    summary["world_size"] = next((e.get("world_size") for e in events if e["event"] == "start"),
                                 None)
    summary["mean_tokens_per_sec_with_compile"] = (
        summary["tokens_seen"] / summary["train_seconds"]
        if summary["tokens_seen"] and summary["train_seconds"] else None)
    return summary


def main() -> None:
    """Run 1 GPU, then N GPUs, and report the scaling."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--work", required=True, help="folder for the two run folders")
    parser.add_argument("--out", default=".", help="folder for distributed_scaling.json")
    parser.add_argument("--gpus", type=int, default=2, help="GPUs of the data-parallel run")
    parser.add_argument("--flags", default=DEFAULT_FLAGS, help="grain-train flags of both runs")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per run at most")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    info = preflight(args.gpus)
    flags = ["--data_dir", args.data_dir, *shlex.split(args.flags)]
    # The single run goes first: it fills the token cache the ranks then share.
    one = train("gpu1", [], flags, work / "gpu1", args.timeout)
    many = train(f"gpu{args.gpus}",
                 [*launcher(), "--backend", "nccl", "-n", str(args.gpus), "--"],
                 flags, work / f"gpu{args.gpus}", args.timeout)
    ok = all(r["stop_reason"] == "completed" and r["median_tokens_per_sec"] for r in (one, many))
    scaling = many["median_tokens_per_sec"] / one["median_tokens_per_sec"] if ok else None
    report = {
        "machine": info, "flags": args.flags, "gpus": args.gpus, "runs": [one, many],
        "tokens_per_sec": {"1": one["median_tokens_per_sec"],
                           str(args.gpus): many["median_tokens_per_sec"]},
        "scaling": scaling, "efficiency": scaling / args.gpus if scaling else None,
        "final_val_loss": {"1": one["last_val_loss"], str(args.gpus): many["last_val_loss"]},
        "final_train_loss": {"1": one["final_train_loss"],
                             str(args.gpus): many["final_train_loss"]},
    }
    (out / "distributed_scaling.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("tokens_per_sec", "scaling", "efficiency",
                                             "final_val_loss", "final_train_loss")}, indent=2))
    if not ok:
        sys.exit("a run did not complete: see the logs above")


if __name__ == "__main__":
    main()
