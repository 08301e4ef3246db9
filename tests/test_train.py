"""The training loop: learning, exact resume, stopping, metrics and checkpoints."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest

from saga_model import checkpoint as ckpt
from saga_model.averaging import EMA_DIR, EMA_FILE
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.data import prepare_data
from saga_model.metrics import Callback, EvalMetrics, MetricsLogger, StepMetrics
from saga_model.model import StoryModel
from saga_model.train import make_schedule, run_training, token_losses


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None, stop: threading.Event | None = None) -> None:
        self.steps: dict[int, float] = {}
        self.evals: list[EvalMetrics] = []
        self.stop_at, self.stop = stop_at, stop

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps[metrics.step] = metrics.loss
        if self.stop is not None and metrics.step == self.stop_at:
            self.stop.set()

    def on_eval(self, metrics: EvalMetrics) -> None:
        self.evals.append(metrics)


@pytest.fixture(scope="module")
def prepared(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepare_data(corpus_dir, tmp_path_factory.mktemp("cache"), vocab_size=600)


def configs(tokenizer, **train: object) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "context_length": 64,
                                   "vocab_size": tokenizer.vocab_size, "dropout": 0.1})
    base = {"steps": 40, "batch_size": 4, "eval_every": 20, "save_every": 20, "warmup_steps": 5,
            "eval_batches": 2}
    return model, TrainConfig(**{**base, **train})


def test_tiny_model_learns_the_tiny_corpus(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer, steps=150, lr=5e-3, eval_every=150, batch_size=8)
    model_cfg.dropout = 0.0
    recorder = Recorder()
    summary = run_training(data, tokenizer, tmp_path, model_cfg, train_cfg, callbacks=[recorder])
    assert recorder.steps[10] > 5.5  # starts near ln(vocab) = 6.4
    assert recorder.steps[150] < 4.5
    assert recorder.evals[-1].val_loss < 5.0
    assert summary.stop_reason == "completed"
    assert (tmp_path / ckpt.FINAL_NPZ).is_file() and (tmp_path / ckpt.WEIGHTS).is_file()


def test_resume_continues_exactly(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer)
    straight = Recorder()
    run_training(data, tokenizer, tmp_path / "a", model_cfg, train_cfg, callbacks=[straight])

    stop = threading.Event()
    first_half = Recorder(stop_at=20, stop=stop)
    summary = run_training(data, tokenizer, tmp_path / "b", model_cfg, train_cfg,
                           callbacks=[first_half], stop_event=stop)
    assert summary.stop_reason == "stopped" and summary.step == 20
    assert not (tmp_path / "b" / ckpt.FINAL_NPZ).exists()
    resumed = Recorder()
    latest = ckpt.list_checkpoints(tmp_path / "b")[-1]
    assert latest.name == "step_0000020"
    run_training(data, tokenizer, tmp_path / "b", model_cfg, train_cfg, resume_from=latest,
                 callbacks=[resumed])
    assert resumed.steps[30] == pytest.approx(straight.steps[30], abs=1e-6)
    assert resumed.steps[40] == pytest.approx(straight.steps[40], abs=1e-6)


def test_metrics_file_and_checkpoint_retention(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer, steps=60, save_every=10, keep_checkpoints=2)
    run_training(data, tokenizer, tmp_path, model_cfg, train_cfg,
                 callbacks=[MetricsLogger(tmp_path / "metrics.jsonl")], sample_tokens=12)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 6 and kinds.count("eval") == 3
    assert all(isinstance(e["sample"], str) for e in events if e["event"] == "eval")
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    best = next(e for e in reversed(events) if e["event"] == "end")["best_step"]
    assert names[-2:] == ["step_0000050", "step_0000060"]
    assert len(names) <= 3 and (best in (50, 60) or f"step_{best:07d}" in names)
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_time_limit_stops_and_still_writes_the_model(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer, steps=100_000, max_minutes=0.05)
    summary = run_training(data, tokenizer, tmp_path, model_cfg, train_cfg)
    assert summary.stop_reason == "time limit" and summary.step < 100_000
    assert (tmp_path / ckpt.FINAL_NPZ).is_file()


def test_patience_stops_early(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer, steps=400, lr=1e-9, warmup_steps=0,
                                   eval_every=10, patience=2)
    summary = run_training(data, tokenizer, tmp_path, model_cfg, train_cfg)
    assert summary.stop_reason == "early stop" and summary.step < 400


def test_token_losses_in_bfloat16_match_float32() -> None:
    # The bfloat16 path skips the float32 copy of the logits; losses and gradients stay close.
    mx.random.seed(0)
    logits = (mx.random.normal((4, 64, 500)) * 3).astype(mx.bfloat16)
    targets = mx.random.randint(0, 500, (4, 64))
    wide = logits.astype(mx.float32)
    reference = nn.losses.cross_entropy(wide, targets, reduction="none")
    assert mx.array_equal(token_losses(wide, targets), reference)
    losses = token_losses(logits, targets)
    assert losses.dtype == mx.float32
    assert mx.abs(losses - reference).max().item() < 0.2
    assert abs(losses.mean().item() - reference.mean().item()) < 0.01
    grad = mx.grad(lambda x: token_losses(x, targets).sum())(logits).astype(mx.float32)
    grad_reference = mx.grad(lambda x: token_losses(x, targets).sum())(wide)
    assert mx.abs(grad - grad_reference).max().item() < 0.01


def test_weight_average_equals_the_hand_computed_ema(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    decay = 0.75
    model_cfg, train_cfg = configs(tokenizer, steps=3, ema_decay=decay, save_every=1,
                                   keep_checkpoints=5, eval_every=0)
    recorder = Recorder()
    run_training(data, tokenizer, tmp_path, model_cfg, train_cfg, callbacks=[recorder])
    mx.random.seed(train_cfg.seed)  # the run's initial weights, built the same way
    expected = ckpt.model_weights(StoryModel(model_cfg))
    for checkpoint in ckpt.list_checkpoints(tmp_path):  # the raw weights after steps 1, 2, 3
        weights, _ = ckpt.load_arrays(checkpoint / ckpt.WEIGHTS)
        expected = {k: decay * v + (1 - decay) * weights[k] for k, v in expected.items()}
    last = ckpt.list_checkpoints(tmp_path)[-1]
    kept, _ = ckpt.load_arrays(last / EMA_FILE)
    saved, _ = ckpt.load_arrays(tmp_path / EMA_DIR / ckpt.WEIGHTS)
    for name, value in expected.items():
        assert mx.allclose(kept[name], value, atol=1e-6).item(), name
        assert mx.allclose(saved[name], value, atol=1e-6).item(), name
    raw, _ = ckpt.load_arrays(last / ckpt.WEIGHTS)
    assert not mx.allclose(raw["head.weight"], expected["head.weight"]).item()
    [final] = recorder.evals
    assert final.ema_val_loss is not None and final.ema_val_loss != final.val_loss


def test_resume_continues_the_weight_average(prepared, tmp_path: Path) -> None:
    tokenizer, data = prepared
    model_cfg, train_cfg = configs(tokenizer, ema_decay=0.9)
    run_training(data, tokenizer, tmp_path / "a", model_cfg, train_cfg)
    stop = threading.Event()
    run_training(data, tokenizer, tmp_path / "b", model_cfg, train_cfg,
                 callbacks=[Recorder(stop_at=20, stop=stop)], stop_event=stop)
    run_training(data, tokenizer, tmp_path / "b", model_cfg, train_cfg,
                 resume_from=ckpt.list_checkpoints(tmp_path / "b")[-1])
    straight, _ = ckpt.load_arrays(ckpt.list_checkpoints(tmp_path / "a")[-1] / EMA_FILE)
    resumed, _ = ckpt.load_arrays(ckpt.list_checkpoints(tmp_path / "b")[-1] / EMA_FILE)
    for name, value in straight.items():
        assert mx.allclose(resumed[name], value, atol=1e-6).item(), name


def test_wsd_schedule_holds_then_decays_linearly() -> None:
    cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, schedule="wsd", decay_fraction=0.2,
                      min_lr_ratio=0.1)
    schedule = make_schedule(cfg)
    lr = [schedule(mx.array(step)).item() for step in (5, 10, 50, 80, 90, 100)]
    assert lr == pytest.approx([5e-3, 1e-2, 1e-2, 1e-2, 5.5e-3, 1e-3])
    stable = make_schedule(TrainConfig(steps=100, lr=1e-2, schedule="wsd", decay_fraction=0.0))
    assert stable(mx.array(100)).item() == pytest.approx(1e-2)
