"""Data-parallel training: two local processes under ``mlx.launch`` (ring backend, CPU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

from saga_model.distributed import StopVote, World
from saga_model.errors import SagaError

TRAIN = ["-m", "saga_model.cli.train"]
SETTINGS = ["--config", "tiny", "--dropout", "0", "--context_length", "64", "--steps", "20",
            "--batch_size", "8", "--eval_every", "10", "--eval_batches", "2", "--save_every", "10",
            "--warmup_steps", "5", "--lr", "5e-3", "--seed", "3"]


def launcher() -> list[str]:
    """MLX's launcher: the ``mlx.launch`` script beside this Python, else its module."""
    script = Path(sys.executable).parent / "mlx.launch"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (the ring backend's rank ports)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free ports")


def launch(*args: str, n: int = 2, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` as ``n`` ranks on this machine. mlx.launch exits 0 even when a rank
    fails, so callers check the output instead of the exit code."""
    command = [*launcher(), "-n", str(n), "--backend", "ring", "--starting-port",
               str(free_ports(n)), "--", sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def of_kind(run_dir: Path, kind: str) -> dict[int, dict]:
    return {e["step"]: e for e in events(run_dir) if e["event"] == kind}


@pytest.fixture(scope="module")
def runs(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same training as one process and as two ranks sharing its global batch."""
    base = tmp_path_factory.mktemp("distributed")
    single = run_cli(*TRAIN, "--data_dir", str(corpus_dir), "--output_dir", str(base / "one"),
                     *SETTINGS, "--quiet")
    assert single.returncode == 0, single.stderr
    pair = launch(*TRAIN, "--data_dir", str(corpus_dir), "--output_dir", str(base / "two"),
                  *SETTINGS)
    assert "done (completed) at step 20" in pair.stdout, pair.stderr
    (base / "two.log").write_text(pair.stdout + pair.stderr)
    return {"one": base / "one", "two": base / "two", "log": base / "two.log"}


def test_two_processes_follow_the_single_process_trajectory(runs: dict[str, Path]) -> None:
    one_steps, two_steps = of_kind(runs["one"], "step"), of_kind(runs["two"], "step")
    assert sorted(one_steps) == sorted(two_steps) == [10, 20]
    for step, expected in one_steps.items():
        got = two_steps[step]
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)
        assert got["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-2)
        assert got["lr"] == pytest.approx(expected["lr"], rel=1e-6)
        assert got["tokens_seen"] == expected["tokens_seen"]  # the global batch
    one_evals, two_evals = of_kind(runs["one"], "eval"), of_kind(runs["two"], "eval")
    assert sorted(one_evals) == sorted(two_evals) == [10, 20]
    for step, expected in one_evals.items():
        assert two_evals[step]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-4)
        assert two_evals[step]["is_best"] == expected["is_best"]


def test_only_rank_zero_writes_and_prints(runs: dict[str, Path]) -> None:
    kinds = [e["event"] for e in events(runs["two"])]
    assert kinds == [e["event"] for e in events(runs["one"])]  # no line written twice
    assert kinds.count("start") == 1 and kinds.count("end") == 1
    start = events(runs["two"])[0]
    assert start["world_size"] == 2 and start["train_config"]["batch_size"] == 8

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != "run.json")

    assert files(runs["two"]) == files(runs["one"])
    log = runs["log"].read_text()
    assert log.count("data parallel: 2 processes, 4 of the 8 sequences") == 1
    assert log.count("step 20: val loss") == 1 and log.count("done (completed)") == 1


def test_resume_under_two_processes_continues_exactly(runs: dict[str, Path],
                                                      corpus_dir: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    first = launch(*TRAIN, "--data_dir", str(corpus_dir), "--output_dir", out, *SETTINGS,
                   "--max_minutes", "0.0001", "--quiet")
    assert "done (time limit)" in first.stdout, first.stderr
    stopped_at = of_kind(tmp_path / "run", "end")
    (step,) = stopped_at
    assert 0 < step < 20  # both ranks left the loop at the same step, or one would hang
    second = launch(*TRAIN, "--resume", "--output_dir", out, "--max_minutes", "60", "--quiet")
    assert "done (completed) at step 20" in second.stdout, second.stderr
    starts = [e for e in events(tmp_path / "run") if e["event"] == "start"]
    assert [s["start_step"] for s in starts] == [0, step]
    straight = of_kind(runs["two"], "step")[20]["loss"]
    assert of_kind(tmp_path / "run", "step")[20]["loss"] == pytest.approx(straight, rel=1e-6)


def test_global_batch_must_split_evenly(corpus_dir: Path, tmp_path: Path) -> None:
    result = launch(*TRAIN, "--data_dir", str(corpus_dir), "--output_dir", str(tmp_path / "x"),
                    "--config", "tiny", "--batch_size", "3", "--steps", "2", timeout=60)
    assert "--batch_size 3 (the global batch) must be a multiple of the number of " \
           "processes (2)" in result.stderr
    assert not (tmp_path / "x").exists()


STUCK_RANK = """
import os, signal, sys
from pathlib import Path
from saga_model.distributed import current_world, exit_when_stuck

world = current_world()
# Each rank's stderr in a file: the launcher may drop what a dying rank wrote last.
err = os.open(Path(sys.argv[2], f"rank{world.rank}.err"), os.O_WRONLY | os.O_CREAT, 0o644)
os.dup2(err, 2)
signal.signal(signal.SIGTERM, lambda *_: print("clean stop requested", flush=True))
exit_when_stuck(float(sys.argv[1]), world.rank)
Path(sys.argv[2], f"rank{world.rank}.pid").write_text(str(os.getpid()))
world.barrier()
if world.rank == 1:
    os.kill(os.getpid(), signal.SIGSTOP)  # a peer that hangs instead of dying
world.barrier()  # rank 0 waits here for good: Python signal handlers cannot run
print("barrier passed", flush=True)
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_rank_stuck_in_a_collective_still_exits_after_a_signal(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_RANK)
    command = [*launcher(), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(2)),
               "--", sys.executable, str(script), "1.5", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                len(pids) == 2 and _state(pids[1]) == "T"):
            time.sleep(0.1)
            for rank in (0, 1):
                path = tmp_path / f"rank{rank}.pid"
                if rank not in pids and path.is_file() and path.read_text():
                    pids[rank] = int(path.read_text())
        assert len(pids) == 2 and _state(pids[1]) == "T", "rank 1 never stopped itself"
        time.sleep(0.5)  # let rank 0 enter the second barrier
        os.kill(pids[0], signal.SIGTERM)
        sent = time.monotonic()
        while _state(pids[0]) not in ("gone", "Z") and time.monotonic() - sent < 30:
            time.sleep(0.05)
        waited = time.monotonic() - sent
        assert _state(pids[0]) in ("gone", "Z"), "rank 0 is still blocked"
        assert 1.0 < waited < 15
    finally:
        for pid in pids.values():
            if _state(pid) not in ("gone", "Z"):
                os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    assert "no clean stop within 1.5 s of the signal" in (tmp_path / "rank0.err").read_text()
    assert "barrier passed" not in out


def test_single_process_world_changes_nothing() -> None:
    world = World()
    batch = np.arange(12).reshape(6, 2)
    assert world.shard(batch) is batch
    assert world.agree("anything")
    vote = StopVote(world)
    assert vote(False, False) is None
    assert vote(False, True) == "time limit"
    assert vote(True, True) == "stopped"


def test_each_rank_keeps_its_slice_of_the_global_batch() -> None:
    batch = np.arange(16).reshape(8, 2)
    slices = [World(rank, 4).shard(batch) for rank in range(4)]
    assert np.array_equal(np.concatenate(slices), batch)
    assert all(s.shape == (2, 2) for s in slices)
    World(1, 4).check_batch_size(8)
    with pytest.raises(SagaError, match="multiple of the number of processes"):
        World(1, 4).check_batch_size(6)
