"""The runs behind the default model's second round (docs/default-model/round-2.json).

On the device machine, in two steps (each a plain ``grain-train`` process per run, all sharing
one GPU; results in the model card, "Round 2"):

    python tools/device/better_model.py real --data D --work W --budget 540
        starts the runs on the real stories only (cosine and WSD schedules, each with an EMA
        of the weights) in the background and returns;
    python tools/device/better_model.py synthetic --gguf G --data D --work W --out OUT
        writes the teacher corpus (tools/teacher_corpus.py), starts the runs that pre-train
        on it and then train on the real stories, waits for every run, and writes
        ``OUT/results.json`` and the two best models (``OUT/best``, ``OUT/second``).

``D`` holds TinyStories' ``train.txt`` and ``valid.txt``. Every run uses the shipped
tokenizer and is scored on ``valid.txt`` at every evaluation; ``--budget`` seconds after the
first step every run has stopped (``--max_minutes``), finished or not.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import summarise  # tools/device is not a package

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "saga_model" / "pretrained" / "tokenizer.json"
#: The shipped model's flags, with an EMA of the weights.
COMMON = ("--batch_size 64 --lr 3e-3 --warmup_steps 200 --dropout 0.35 --name_swap 0.5 "
          "--eval_every 250 --eval_batches 0 --save_every 0 --ema_decay 0.999 --quiet "
          f"--tokenizer_path {TOKENIZER}")
#: name -> phases: (data folder, flags); a later phase resumes the run on its own data.
REAL_RUNS = {
    "cosine": [("real", "--steps 10000 --augment_copies 4")],
    "wsd": [("real", "--steps 10000 --augment_copies 4 --schedule wsd --decay_fraction 0.25")],
}
SYNTHETIC_RUNS = {
    "synth-then-real": [
        ("synthetic", "--steps 2500 --augment_copies 1 --schedule wsd --decay_fraction 0"),
        ("real", "--steps 8000 --augment_copies 4 --decay_fraction 0.45")],
    "mix-then-real": [
        ("mix", "--steps 4000 --augment_copies 2 --schedule wsd --decay_fraction 0"),
        ("real", "--steps 8000 --augment_copies 4 --decay_fraction 0.45")],
}
DEADLINE_FILE = "deadline.json"


def phase_commands(work: Path, name: str, phases: list[tuple[str, str]], deadline: float,
                   steps_scale: float) -> str:
    """One shell line running the phases of a run in turn (later ones with ``--resume``).

    Each phase may train until ``deadline`` (a Unix time), counted when the phase starts.
    """
    minutes = (f"$({sys.executable} -c 'import time; "
               f"print(round(max(0.2, ({deadline:.0f} - time.time()) / 60), 2))')")
    lines = []
    for i, (data, flags) in enumerate(phases):
        base = [sys.executable, "-m", "saga_model.cli.train", "--data_dir", str(work / data),
                "--output_dir", str(work / name), "--cache_dir", str(work / f"cache-{name}")]
        words = (["--resume"] if i else shlex.split(COMMON)) + shlex.split(flags)
        words = [str(max(1, round(int(w) * steps_scale))) if k and words[k - 1] == "--steps"
                 else w for k, w in enumerate(words)]
        lines.append(f"{shlex.join(base + words)} --max_minutes {minutes}")
    return " && ".join(lines)


def launch(work: Path, runs: dict[str, list[tuple[str, str]]], deadline: float,
           steps_scale: float) -> None:
    """Start each run in its own process session, logging to ``WORK/NAME.log``."""
    for name, phases in runs.items():
        shutil.rmtree(work / name, ignore_errors=True)
        (work / f"{name}.done").unlink(missing_ok=True)
        command = phase_commands(work, name, phases, deadline, steps_scale)
        with open(work / f"{name}.log", "w") as log:
            subprocess.Popen(["bash", "-c", f"{command}; echo exit=$? >> {work}/{name}.done"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        print(f"started {name}: {command}", flush=True)


def link_data(work: Path, real: Path, synthetic: Path | None) -> None:
    """The data folders the phases name: real, synthetic (+ real valid), mix (all)."""
    folders = {"real": ["train.txt"]}
    if synthetic is not None:
        folders |= {"synthetic": [], "mix": ["train.txt"]}
    for folder, real_files in folders.items():
        target = work / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in [*real_files, "valid.txt"]:
            shutil.copy(real / name, target / name)
        if folder != "real":
            shutil.copy(synthetic / "synthetic.txt", target / "synthetic.txt")


def start_real(args: argparse.Namespace) -> None:
    """Step 1: the real-data runs, in the background."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget
    (work / DEADLINE_FILE).write_text(json.dumps({"deadline": deadline,
                                                  "steps_scale": args.steps_scale}))
    link_data(work, Path(args.data), None)
    launch(work, REAL_RUNS, deadline, args.steps_scale)


def wait_for(work: Path, names: list[str], deadline: float) -> None:
    """Until every run has written its ``.done`` file (or a minute past the deadline)."""
    while time.time() < deadline + 60:
        if all((work / f"{n}.done").exists() for n in names):
            return
        time.sleep(5)


def run_synthetic(args: argparse.Namespace) -> None:
    """Step 2: teacher corpus, the runs on it, then results and the two best models."""
    work, out = Path(args.work), Path(args.out)
    plan = json.loads((work / DEADLINE_FILE).read_text())
    deadline = plan["deadline"]
    teacher_dir = work / "teacher"
    if not (teacher_dir / "teacher.json").is_file():  # a corpus written earlier is reused
        subprocess.run([sys.executable, str(ROOT / "tools" / "teacher_corpus.py"),
                        "--gguf", args.gguf, "--vocabulary", str(Path(args.data) / "train.txt"),
                        "--out", str(teacher_dir), "--prompts", str(args.prompts),
                        "--max_seconds", str(args.teacher_seconds), "--seed", "0"], check=False)
    names = list(REAL_RUNS)
    if (teacher_dir / "teacher.json").is_file():  # without a corpus, report the real runs
        link_data(work, Path(args.data), teacher_dir)
        launch(work, SYNTHETIC_RUNS, deadline, plan["steps_scale"])
        names += list(SYNTHETIC_RUNS)
    wait_for(work, names, deadline)
    results = []
    for name in names:
        flags = " ; ".join(f"[{data}] {f}" for data, f in {**REAL_RUNS, **SYNTHETIC_RUNS}[name])
        done = work / f"{name}.done"
        code = int(done.read_text().strip().split("=")[-1]) if done.exists() else -1
        result = summarise(name, flags, work / name, code, 0.0)
        result["log_tail"] = (work / f"{name}.log").read_text()[-600:]
        results.append(result)
    candidates = []
    for r in results:
        for folder, key in (("best", "best_val_loss"), ("ema", "best_ema_val_loss")):
            if r[key] is not None:
                candidates.append((r[key], r["name"], folder))
    candidates.sort()
    out.mkdir(parents=True, exist_ok=True)
    returned = {}
    for slot, (loss, name, folder) in zip(("best", "second"), candidates, strict=False):
        (out / slot).mkdir(exist_ok=True)
        for file in ("model.safetensors", "config.json"):
            shutil.copy(work / name / folder / file, out / slot / file)
        returned[slot] = {"run": name, "weights": folder, "val_loss": loss}
    teacher_file = teacher_dir / "teacher.json"
    teacher = json.loads(teacher_file.read_text()) if teacher_file.is_file() else None
    (out / "results.json").write_text(json.dumps(
        {"runs": results, "returned_models": returned, "teacher": teacher}, indent=2))
    print(json.dumps(returned, indent=1))
    subprocess.run(["tar", "-cJf", str(out / "extras.tar.xz"), "-C", str(work),
                    "teacher", *[f"{n}.log" for n in names],
                    *[f"{n}/metrics.jsonl" for n in names if (work / n).is_dir()]], check=False)


def main() -> None:
    """Dispatch the two steps."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    real = sub.add_parser("real")
    real.add_argument("--data", required=True)
    real.add_argument("--work", required=True)
    real.add_argument("--budget", type=float, default=540)
    real.add_argument("--steps_scale", type=float, default=1.0,
                      help="multiply every run's steps (for a quick check on a CPU)")
    synthetic = sub.add_parser("synthetic")
    synthetic.add_argument("--gguf", required=True)
    synthetic.add_argument("--data", required=True)
    synthetic.add_argument("--work", required=True)
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--prompts", type=int, default=40_000)
    synthetic.add_argument("--teacher_seconds", type=float, default=90)
    args = parser.parse_args()
    if args.step == "real":
        start_real(args)
    else:
        run_synthetic(args)


if __name__ == "__main__":
    main()
