"""Training batches gathered on the device (forced on here, on the CPU) against the host's."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from saga_model import train_batches
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.data import TokenSplit, prepare_data, sample_batch, window_starts
from saga_model.distributed import World
from saga_model.metrics import Callback, StepMetrics
from saga_model.train import run_training
from saga_model.train_batches import TrainingBatches

CONTEXT, BATCH, SEED = 24, 8, 5


@pytest.fixture(scope="module")
def split() -> TokenSplit:
    """Stories of random lengths (some longer than the context) of random uint16 tokens."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 3 * CONTEXT, 60)
    tokens = rng.integers(0, 65535, int(lengths.sum()), dtype=np.uint16)
    return TokenSplit(tokens=tokens, starts=np.cumsum(lengths) - lengths, n_bytes=0)


def host_batch(split: TokenSplit, step: int) -> np.ndarray:
    return sample_batch(split, window_starts(split, CONTEXT), BATCH, CONTEXT, SEED, step)


def test_device_gather_gives_the_host_batches(split: TokenSplit) -> None:
    batches = TrainingBatches(split, CONTEXT, BATCH, SEED, on_device=True)
    assert batches.on_device
    for step in (0, 1, 2, 7, 1000):
        batch = batches(step)
        assert batch.dtype == mx.int32 and batch.shape == (BATCH, CONTEXT + 1)
        assert np.array_equal(np.array(batch), host_batch(split, step))


def test_each_rank_gathers_its_slice_of_the_global_batch(split: TokenSplit) -> None:
    ranks = [TrainingBatches(split, CONTEXT, BATCH, SEED, World(rank, 4), on_device=True)
             for rank in range(4)]
    for step in (0, 3, 11):
        slices = [np.array(batches(step)) for batches in ranks]
        assert all(s.shape == (BATCH // 4, CONTEXT + 1) for s in slices)
        assert np.array_equal(np.concatenate(slices), host_batch(split, step))


def test_host_batches_where_the_gather_does_not_pay(split: TokenSplit,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert not TrainingBatches(split, CONTEXT, BATCH, SEED).on_device  # a CPU
    monkeypatch.setattr(train_batches, "on_cuda_gpu", lambda: True)
    assert TrainingBatches(split, CONTEXT, BATCH, SEED).on_device
    monkeypatch.setattr(train_batches, "MAX_RESIDENT_BYTES", 4 * split.n_tokens - 1)
    host = TrainingBatches(split, CONTEXT, BATCH, SEED)  # too large to keep on the device
    assert not host.on_device
    assert np.array_equal(np.array(host(3)), host_batch(split, 3))


class Losses(Callback):
    def __init__(self) -> None:
        self.steps: dict[int, float] = {}

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps[metrics.step] = metrics.loss


def test_training_on_gathered_batches_follows_the_host_batches(
        corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer, data = prepare_data(corpus_dir, tmp_path / "cache", vocab_size=600)
    model_cfg = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "context_length": 32,
                                       "vocab_size": tokenizer.vocab_size, "dropout": 0.0})
    train_cfg = TrainConfig(steps=20, batch_size=4, eval_every=0, save_every=0,
                            warmup_steps=2, lr=5e-3)
    runs = {}
    for gather in (False, True):
        monkeypatch.setattr(train_batches, "on_cuda_gpu", lambda on=gather: on)
        runs[gather] = Losses()
        summary = run_training(data, tokenizer, tmp_path / str(gather), model_cfg, train_cfg,
                               callbacks=[runs[gather]])
        assert summary.stop_reason == "completed"
    assert runs[True].steps == runs[False].steps and len(runs[True].steps) == 2
