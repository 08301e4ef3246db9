"""metrics.jsonl read back through the types it is written with; bad lines counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import saga_model
from saga_model.metrics import parse_event

INFO = {"parameters": 1000, "train_config": {"steps": 100}, "start_step": 0}
STEP = saga_model.StepMetrics(step=10, total_steps=100, loss=2.5, lr=1e-3, grad_norm=0.5,
                              tokens_per_sec=900.0, tokens_seen=1000, elapsed=4.0)
EVAL = saga_model.EvalMetrics(step=10, val_loss=2.6, val_bpb=1.1, is_best=True,
                              sample="Zara ran.")
END = saga_model.TrainSummary(step=10, tokens_seen=1000, elapsed=4.0, best_val_loss=2.6,
                              best_step=10, stop_reason="stopped", output_dir="run")


def test_what_the_logger_writes_reads_back_as_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    logger = saga_model.MetricsLogger(path)
    logger.on_start(INFO)
    logger.on_step(STEP)
    logger.on_eval(EVAL)
    logger.on_checkpoint(10, tmp_path / "step_10")
    logger.on_end(END)
    events, bad = saga_model.read_metrics(path)
    checkpoint = saga_model.CheckpointSaved(10, str(tmp_path / "step_10"))
    assert events == [saga_model.RunStart(INFO), STEP, EVAL, checkpoint, END]
    assert bad == 0
    first = json.loads(path.read_text().splitlines()[1])
    assert first["event"] == "step" and first["loss"] == 2.5 and "time" in first  # the format


def test_the_reader_follows_complete_new_lines_and_counts_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reader = saga_model.MetricsReader(path)
    assert reader.read_new() == []  # not there yet
    line = json.dumps({"event": "step", **STEP.__dict__})
    path.write_text(f"{line}\n{line[:20]}")
    assert reader.read_new() == [STEP]
    with open(path, "a") as handle:
        handle.write(f"{line[20:]}\nnot json\n[1]\n" '{"event": "step", "step": 3}\n'
                     '{"event": "eval", "step": 1, "val_loss": "low", "val_bpb": 1, '
                     '"is_best": false}\n{"event": "party"}\n\n')
    assert reader.read_new() == [STEP]
    assert reader.bad_lines == 5
    assert reader.read_new() == []
    path.unlink()
    path.write_text(f"{line}\n")  # a new file is read from its start
    assert reader.read_new() == [STEP] and reader.bad_lines == 0


@pytest.mark.parametrize("line", ['{"event": "start", "parameters": 5}',
                                  '{"event": "end", "step": 3}', '"step"'])
def test_incomplete_events_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_event(line)


def test_the_eta_is_the_average_pace_so_far() -> None:
    assert STEP.remaining_seconds == pytest.approx(36.0)  # 90 steps at 0.4 s
