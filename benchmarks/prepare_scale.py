"""Preparing data at scale: throughput (MB/s) and peak memory of ``prepare_data``.

Builds a synthetic corpus of ``--size_mb`` from the shared TinyStories slice (each story is a
real story with about a third of its sentences swapped for sentences of other stories, so all
stories are distinct and look like TinyStories to the labeller and the tokenizer), in a
temporary folder that is deleted afterwards.  Then, each in a fresh process:

* ``cold``: prepare it from scratch with one worker per core (hash the files, sample and train
  the tokenizer, label/condition/tokenize everything);
* ``cached``: the same call again (what a second ``grain-train`` pays: re-hash, then load);
* ``serial``: prepare the first ``--serial_mb`` with a single worker (speed of one core).

Peak memory is measured three ways: the preparing process's own peak (``RUSAGE_SELF``), the
largest worker's peak (its VmHWM, read from ``/proc``), and the sum of the resident memory of
the whole process tree, sampled from ``/proc`` every 0.1 s.  ``RUSAGE_CHILDREN`` is recorded
too but overstates: spawned workers are forks of the preparing process until they exec.
Results go to ``benchmarks/results/prepare_scale.json``.

    python benchmarks/prepare_scale.py --size_mb 1024
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "tinystories" / "train.txt"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "prepare_scale.json"
#: TinyStories V2 GPT-4 train file, about 2.2 GB (the figure the extrapolation uses).
TINYSTORIES_V2_BYTES = 2.2e9
LAPTOP_CORES = 8
SEPARATOR = "<|endoftext|>"


def build_corpus(source: Path, folder: Path, size: int, seed: int = 0) -> dict[str, int]:
    """Write ``synthetic-train.txt`` (``size`` bytes) and ``synthetic-valid.txt`` (1%)."""
    stories = [s.strip() for s in source.read_text(encoding="utf-8").split(SEPARATOR)]
    sentences = [re.split(r"(?<=[.!?])\s+", s) for s in stories if s]
    pool = [sentence for story in sentences for sentence in story]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, target in (("train", size), ("valid", max(1, size // 100))):
        written = n = 0
        with open(folder / f"synthetic-{name}.txt", "w", encoding="utf-8") as out:
            while written < target:
                story = " ".join(s if rng.random() > 0.3 else rng.choice(pool)
                                 for s in rng.choice(sentences))
                text = f"{story}\n{SEPARATOR}\n"
                out.write(text)
                written += len(text.encode())
                n += 1
        counts[f"{name}_bytes"], counts[f"{name}_stories"] = written, n
    counts["bytes"] = counts["train_bytes"] + counts["valid_bytes"]
    return counts


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children.extend(int(c) for c in handle.read().split())
    except OSError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; zeros once it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line[:5]] = int(line.split()[1])
    except OSError:
        pass
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def run_measured(args: list[str]) -> dict[str, Any]:
    """Run this script's child mode, sampling the memory of its whole process tree."""
    child = subprocess.Popen([sys.executable, __file__, "--child", *args],
                             stdout=subprocess.PIPE, text=True)
    peak = worker_peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, worker_peak
        while not done.wait(0.1):
            workers = [_memory_kb(p) for p in _descendants(child.pid)]
            peak = max(peak, _memory_kb(child.pid)[0] + sum(rss for rss, _ in workers))
            worker_peak = max([worker_peak, *(hwm for _, hwm in workers)])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"preparation failed (exit code {child.returncode})")
    result = json.loads(out)
    result["peak_rss_mb"]["total"] = round(peak / 1024, 1) if peak else None
    result["peak_rss_mb"]["largest_worker"] = round(worker_peak / 1024, 1)
    return result


def child(corpus: str, cache: str, workers: int, vocab_size: int) -> None:
    """Prepare ``corpus`` once and print timings and peak memory as JSON."""
    from saga_model.data import prepare_data

    phases: dict[str, list[float]] = {}
    started = time.perf_counter()

    def progress(label: str, done: int, total: int) -> None:
        now = time.perf_counter() - started
        phases.setdefault(label, [now, now])[1] = now

    _, data = prepare_data(corpus, cache, vocab_size=vocab_size, workers=workers,
                           progress=progress)
    seconds = time.perf_counter() - started
    meta = json.loads((data.cache_dir / "meta.json").read_text())
    # Each phase lasts until the next one starts (progress is reported as chunks are read).
    names = list(phases)
    bounds = [phases[n][0] for n in names] + [seconds]
    kb = 1024
    print(json.dumps({
        "seconds": round(seconds, 2),
        "phases_s": {n: round(bounds[i + 1] - bounds[i], 2) for i, n in enumerate(names)},
        "train_tokens": meta["train_tokens"], "valid_tokens": meta["valid_tokens"],
        "stories": meta["train_stories"] + meta["valid_stories"],
        "peak_rss_mb": {
            "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb, 1),
            # Counts each child's pages from before its exec (a copy of this process), so
            # it is not a worker's own peak; the parent samples that from /proc instead.
            "children_rusage": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb, 1),
        },
    }))


def step_costs(source: Path, n: int = 3000, baseline: Path | None = None) -> dict[str, Any]:
    """CPU milliseconds per story of each step a worker runs, on the first ``n`` stories of
    ``source`` (one thread; ``baseline``: another ``labels.py`` to time the same way)."""
    import importlib.util

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from saga_model import labels
    from saga_model.data import clean_story, conditioned_example, split_stories
    from saga_model.tokenizer import train_tokenizer

    raw = split_stories(source.read_text(encoding="utf-8"))[:n]
    stories = [clean_story(s) for s in raw]

    def cpu_ms(fn: Any, items: list[Any]) -> float:
        fn(items[: len(items) // 10])  # warm caches
        start = time.process_time()
        fn(items)
        return round((time.process_time() - start) / len(items) * 1e3, 3)

    def label_steps(module: Any) -> dict[str, float]:
        found = [module.derive_labels(s) for s in stories]
        cast = [(s, f.characters) for s, f in zip(stories, found, strict=True) if f.characters]
        return {
            "derive_labels": cpu_ms(lambda xs: [module.derive_labels(x) for x in xs], stories),
            "swap_names_per_story_with_characters": cpu_ms(
                lambda xs: [module.swap_names(s, c, random.Random(0)) for s, c in xs], cast),
        }

    tokenizer = train_tokenizer(stories, 8000)
    found = [labels.derive_labels(s) for s in stories]
    examples = [conditioned_example(s, f, random.Random(i), 0.3, 0.9)
                for i, (s, f) in enumerate(zip(stories, found, strict=True))]
    result: dict[str, Any] = {
        "stories": len(stories), "mean_chars": round(sum(map(len, stories)) / len(stories)),
        "ms_per_story": {
            "clean_story": cpu_ms(lambda xs: [clean_story(x) for x in xs], raw),
            **label_steps(labels),
            "conditioned_example": cpu_ms(
                lambda xs: [conditioned_example(s, f, random.Random(0), 0.3, 0.9)
                            for s, f in xs], list(zip(stories, found, strict=True))),
            "encode_one_thread": cpu_ms(tokenizer.encode_batch, examples),
        },
    }
    if baseline:
        spec = importlib.util.spec_from_file_location("baseline_labels", baseline)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["baseline_labels"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        result["baseline_ms_per_story"] = label_steps(module)
    return result


def machine() -> dict[str, Any]:
    """The shared machine description of ``benchmarks.common`` plus memory and tokenizers."""
    import tokenizers

    from benchmarks.common import machine_info

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {**machine_info(), "ram_gb": round(ram / 2**30, 1),
            "tokenizers": tokenizers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="TinyStories-format text the synthetic corpus is made from")
    parser.add_argument("--size_mb", type=float, default=1024, help="synthetic corpus size")
    parser.add_argument("--serial_mb", type=float, default=64,
                        help="size prepared with a single worker (per-core speed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--workdir", type=Path, help="temporary folder (default: under /tmp)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--steps_only", action="store_true",
                        help="only time each per-story step on --source and add that to the "
                             "results file")
    parser.add_argument("--baseline_labels", type=Path,
                        help="with --steps_only: another labels.py to time as well (e.g. "
                             "from git history)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        corpus, cache, workers, vocab = args.child
        child(corpus, cache, int(workers), int(vocab))
        return
    if args.steps_only:
        report = json.loads(args.output.read_text()) if args.output.is_file() else {}
        report["steps"] = {**step_costs(args.source, baseline=args.baseline_labels),
                           "machine": machine()}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["steps"]["ms_per_story"]))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="grain-prepare-scale-", dir="/tmp"))
    from benchmarks.common import now_utc

    report: dict[str, Any] = {"benchmark": "prepare_scale", "date": now_utc(),
                              "machine": machine(),
                              "settings": {"size_mb": args.size_mb, "serial_mb": args.serial_mb,
                                           "workers": args.workers,
                                           "vocab_size": args.vocab_size}}
    try:
        started = time.perf_counter()
        corpus = build_corpus(args.source, work / "corpus", int(args.size_mb * 1e6))
        serial = build_corpus(args.source, work / "serial", int(args.serial_mb * 1e6), seed=1)
        print(f"corpus: {corpus['bytes'] / 1e6:,.0f} MB, {corpus['train_stories']:,} + "
              f"{corpus['valid_stories']:,} stories (built in "
              f"{time.perf_counter() - started:.0f}s)", flush=True)
        report["corpus"] = corpus
        runs = {"cold": (work / "corpus", args.workers), "cached": (work / "corpus", args.workers),
                "serial": (work / "serial", 1)}
        for name, (folder, workers) in runs.items():
            result = run_measured([str(folder), str(work / "cache"), str(workers),
                                   str(args.vocab_size)])
            size = (corpus if folder.name == "corpus" else serial)["bytes"]
            result.update(workers=workers, bytes=size,
                          mb_per_s=round(size / 1e6 / result["seconds"], 2))
            preparing = result["phases_s"].get("preparing data")
            if preparing:
                result["preparing_mb_per_s"] = round(size / 1e6 / preparing, 2)
            report[name] = result
            print(f"{name}: {json.dumps(result)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["extrapolation"] = extrapolate(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["extrapolation"], indent=2))


def extrapolate(report: dict[str, Any]) -> dict[str, Any]:
    """Minutes for TinyStories V2 (2.2 GB) with this machine's cores and with a laptop's
    ``LAPTOP_CORES``, each as fast as one core here: hashing and tokenizer training as
    measured, the tokenizer sample and the per-story work at the serial speed per core times
    the parallel efficiency measured here."""
    cold, serial = report["cold"], report["serial"]
    per_core = serial.get("preparing_mb_per_s")
    parallel = cold.get("preparing_mb_per_s")
    if not per_core or not parallel:
        return {}
    efficiency = min(1.0, parallel / (per_core * cold["workers"]))
    phases = cold["phases_s"]
    hashing = phases.get("checking data", 0.0) / (cold["bytes"] / 1e6)  # seconds per MB
    sampling = phases.get("sampling for the tokenizer", 0.0) * cold["workers"]  # core-seconds
    training = phases.get("training tokenizer", 0.0)
    size_mb = TINYSTORIES_V2_BYTES / 1e6
    minutes = {}
    for cores in (cold["workers"], LAPTOP_CORES):
        seconds = (hashing * size_mb + sampling / (cores * efficiency) + training
                   + size_mb / (per_core * cores * efficiency))
        minutes[f"{cores}_cores"] = round(seconds / 60, 1)
    return {
        "per_core_mb_per_s": per_core, "parallel_efficiency": round(efficiency, 2),
        "tinystories_v2_mb": size_mb, "minutes": minutes,
        "assumptions": f"{LAPTOP_CORES} laptop cores, each as fast as one core here, with the "
                       "parallel efficiency measured here; hashing and tokenizer training "
                       "as measured here",
    }


if __name__ == "__main__":
    main()
