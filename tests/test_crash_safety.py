"""kill -9 at the worst moments of training (a checkpoint save, pruning, the final write),
then resume: the run must end exactly as an unbroken one, with nothing left behind."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
from conftest import ROOT, run_cli

from saga_model import checkpoint as ckpt
from saga_model.atomic import current_umask

#: Runs grain-train, SIGKILLing itself at a chosen moment: ``rename PATTERN N`` just before
#: the N-th finished file or folder whose name matches is renamed into place, ``delete
#: PATTERN N`` half-way through deleting the N-th matching folder (one file gone).
KILLED_AT = """
import fnmatch, os, shutil, signal, sys
from saga_model.cli.train import run
kind, pattern, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
del sys.argv[1:4]
seen = []
def hit(name):
    if fnmatch.fnmatch(os.path.basename(name), pattern):
        seen.append(name)
        return len(seen) == nth
    return False
real_replace, real_rmtree = os.replace, shutil.rmtree
def replace(src, dst, *args, **kwargs):
    if kind == "rename" and hit(dst):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
def rmtree(path, *args, **kwargs):
    if kind == "delete" and hit(path):
        os.unlink(os.path.join(path, "state.json"))
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rmtree(path, *args, **kwargs)
os.replace, shutil.rmtree = replace, rmtree
sys.argv[0] = "grain-train"
run()
"""
SETTINGS = ["--config", "tiny", "--steps", "20", "--batch_size", "2", "--save_every", "5",
            "--keep_checkpoints", "1", "--eval_every", "0", "--eval_batches", "2", "--quiet"]


def train(out: Path, *extra: str, killed_at: tuple[str, str, int] | None = None) -> int:
    args = ["--data_dir", str(ROOT / "tests" / "fixtures" / "stories"), "--output_dir",
            str(out), *SETTINGS, *extra]
    if killed_at is None:
        result = run_cli("-m", "saga_model.cli.train", *args)
    else:
        kind, pattern, nth = killed_at
        result = run_cli("-c", KILLED_AT, kind, pattern, str(nth), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode


def leftovers(out: Path) -> list[str]:
    """Temporary files and folders, and checkpoint folders without their state file."""
    found = [p for p in out.rglob("*") if p.name.startswith(".")]
    found += [p for p in (out / ckpt.CHECKPOINTS).iterdir() if not (p / ckpt.STATE).is_file()]
    return sorted(str(p.relative_to(out)) for p in found)


def logged_losses(out: Path) -> list[tuple[int, float]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(e["step"], e["loss"]) for e in map(json.loads, lines) if e["event"] == "step"]


def final_weights(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / ckpt.FINAL_NPZ) as npz:
        return {name: npz[name] for name in npz.files}


def test_kill_9_during_save_prune_and_final_write_then_exact_resume(tmp_path: Path) -> None:
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    assert train(unbroken) == 0

    # Killed before the step-10 checkpoint is renamed into place: resumes from step 5, in the
    # middle of a 10-step loss window.
    assert train(killed, killed_at=("rename", "step_*", 2)) == -signal.SIGKILL
    assert any(".step_0000010." in name for name in leftovers(killed))
    # Killed half-way through pruning step 5 (after step 10 was saved).
    assert train(killed, "--resume", killed_at=("delete", "*step_0000005*", 1)) \
        == -signal.SIGKILL
    # Killed just before the final model is renamed into place.
    assert train(killed, "--resume", killed_at=("rename", ckpt.FINAL_NPZ, 1)) == -signal.SIGKILL
    assert not (killed / ckpt.FINAL_NPZ).exists()
    assert train(killed, "--resume") == 0

    assert leftovers(killed) == []
    assert logged_losses(killed) == logged_losses(unbroken)  # no step twice, same averages
    expected = final_weights(unbroken)
    got = final_weights(killed)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_damaged_newest_checkpoint_falls_back_and_run_json_is_optional(
        tiny_model_dir: Path, corpus_dir: Path) -> None:
    newest = ckpt.list_checkpoints(tiny_model_dir)[-1]
    (newest / ckpt.WEIGHTS).write_bytes(b"damaged by a crash")
    (tiny_model_dir / "run.json").unlink()
    result = run_cli("-m", "saga_model.cli.train", "--output_dir", str(tiny_model_dir),
                     "--resume", "--data_dir", str(corpus_dir), "--steps", "60",
                     "--eval_every", "0")
    assert result.returncode == 0, result.stderr
    assert f"checkpoint {newest.name} is damaged" in result.stderr
    assert "resuming at step 40" in result.stderr
    assert (tiny_model_dir / ckpt.CHECKPOINTS / f"damaged-{newest.name}").is_dir()
    assert ckpt.list_checkpoints(tiny_model_dir)[-1].name == "step_0000060"


def test_a_new_run_that_fails_late_leaves_no_run_behind(tmp_path: Path) -> None:
    """A run that dies before its first checkpoint leaves no half-made run folder."""
    out = tmp_path / "out"
    code = train(out, "--lr", "1e30", "--save_every", "0")  # diverges at once
    assert code == 2
    assert not out.exists()


def test_files_of_a_run_follow_the_umask(tiny_run: Path) -> None:
    """Every file and folder a run writes has the permissions a plain open()/mkdir gives."""
    mask = current_umask()
    modes = {str(p.relative_to(tiny_run)): p.stat().st_mode & 0o777
             for p in [tiny_run, *tiny_run.rglob("*")]}
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o777 if (tiny_run / name).is_dir() else 0o666) & ~mask}
    assert wrong == {}
