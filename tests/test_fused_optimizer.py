"""Gradient clipping and AdamW in two CUDA kernels (saga_model.fused_optimizer).

On the CPU the wrapper runs around MLX's own AdamW arithmetic with the kernels' contract and
must follow MLX's optimizers step by step (parameters, moments, step counters, learning
rates, the state's layout); on a CUDA GPU (the device machine, or emulated) the kernels
themselves are checked against MLX's optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from kernel_helpers import ON_A_CUDA_GPU
from mlx.utils import tree_flatten, tree_unflatten

from saga_model import cuda, fused_optimizer
from saga_model import train as train_module
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.fused_optimizer import (
    ClipAndUpdate,
    Group,
    Slot,
    Updated,
    fused_adamw_available,
    fused_clip_and_update,
    make_clip_and_update,
)
from saga_model.model import StoryModel
from saga_model.train import build_train_step, make_optimizer

ON_CUDA = fused_optimizer.kernels_run_here(mx.float32)
#: Warmup, then cosine: the learning rate differs at every step (0 at the first).
SCHEDULE = TrainConfig(steps=10, warmup_steps=2, lr=1e-2)
#: Clipping active (every gradient here is far longer), inactive, and off (grad_clip 0).
MAX_NORMS = [0.5, 1e5, math.inf]

Model = Callable[[], nn.Module]
Record = dict[str, mx.array]


def plain_adamw(slots: Sequence[Slot], groups: Sequence[Group], max_norm: float
                ) -> tuple[list[Updated], mx.array]:
    """The kernels' contract with MLX's own arithmetic: ``optim.clip_grad_norm``, then each
    slot's group's ``AdamW.apply_single``."""
    clipped, norm = optim.clip_grad_norm([slot.gradient for slot in slots], max_norm)
    updated = []
    for slot, gradient in zip(slots, clipped, strict=True):
        group = groups[slot.group]
        adamw = optim.AdamW(group.learning_rate, [group.beta1, group.beta2], group.eps,
                            group.weight_decay)
        state = {"m": slot.m, "v": slot.v}
        parameter = adamw.apply_single(gradient, slot.parameter, state)
        updated.append((parameter, state["m"], state["v"]))
    return updated, norm


def mlx_clip_and_update(model: nn.Module, optimizer: optim.Optimizer,
                        gradients: dict[str, Any], max_norm: float) -> mx.array:
    """The training step's clipping and update elsewhere (CPU, Metal)."""
    clipped, norm = optim.clip_grad_norm(gradients, max_norm)
    optimizer.update(model, clipped)
    return norm


class Small(nn.Module):
    """Matrices (weight decay) and vectors (none) in a list and a module: 1,200 + 40 + 35 + 130
    values, five of the kernels' chunks, the first array two."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(30, 40), nn.Linear(7, 5, bias=False)]
        self.norm = nn.RMSNorm(130)


def tiny_model() -> nn.Module:
    return StoryModel(PRESETS["tiny"])


def seed_model() -> nn.Module:
    return StoryModel(PRESETS["seed"])


def gradient_steps(model: nn.Module, steps: int) -> list[dict[str, Any]]:
    """Random gradients for ``model``: the second step's all zero, the third's first array."""
    mx.random.seed(3)
    found = []
    for step in range(steps):
        flat = [(path, mx.random.normal(value.shape) * 2)
                for path, value in tree_flatten(model.trainable_parameters())]
        if step == 1:
            flat = [(path, mx.zeros_like(value)) for path, value in flat]
        if step == 2:
            flat[0] = (flat[0][0], mx.zeros_like(flat[0][1]))
        found.append(tree_unflatten(flat))
    return found


def restored(optimizer: optim.Optimizer, model: nn.Module) -> optim.Optimizer:
    """A new optimizer with ``optimizer``'s state, restored as ``checkpoint`` restores it."""
    arrays = dict(tree_flatten(optimizer.state))
    fresh = make_optimizer(SCHEDULE)
    fresh.init(model.trainable_parameters())
    fresh.state = tree_unflatten(list(arrays.items()))
    return fresh


def trajectory(make_model: Model, update: ClipAndUpdate, max_norm: float, steps: int = 4,
               restore_after: int | None = None) -> list[Record]:
    """The norm, parameters and optimizer state after each of ``steps`` updates from the same
    start with the same gradients (the optimizer restored from its state after step
    ``restore_after``)."""
    mx.random.seed(0)
    model = make_model()
    optimizer = make_optimizer(SCHEDULE)
    optimizer.init(model.trainable_parameters())
    records = []
    for step, gradients in enumerate(gradient_steps(model, steps)):
        norm = update(model, optimizer, gradients, max_norm)
        mx.eval(norm, model.parameters(), optimizer.state)
        records.append({"norm": norm,
                        **{f"parameters.{path}": value
                           for path, value in tree_flatten(model.parameters())},
                        **{f"optimizer.{path}": value
                           for path, value in tree_flatten(optimizer.state)}})
        if step == restore_after:
            optimizer = restored(optimizer, model)
    return records


def differences(got: list[Record], want: list[Record], tolerance: float) -> list[str]:
    """Where ``got`` is not ``want``: another name, dtype or shape, or a largest difference
    over ``tolerance`` times the largest entry of ``want``."""
    found = []
    for step, (got_step, want_step) in enumerate(zip(got, want, strict=True)):
        if got_step.keys() != want_step.keys():
            return [f"step {step}: {sorted(got_step.keys() ^ want_step.keys())}"]
        for name, expected in want_step.items():
            value = got_step[name]
            if value.dtype != expected.dtype or value.shape != expected.shape:
                found.append(f"step {step} {name}: {value.dtype} {value.shape}")
                continue
            value, expected = value.astype(mx.float32), expected.astype(mx.float32)
            error = mx.abs(value - expected).max().item()
            if error > tolerance * max(mx.abs(expected).max().item(), 1e-30):
                found.append(f"step {step} {name}: {error:.3g}")
    return found


def check_clipping(records: list[Record], max_norm: float) -> None:
    """The first step's gradient was clipped exactly when ``max_norm`` is the short one."""
    assert (records[0]["norm"].item() > max_norm) == (max_norm == MAX_NORMS[0])


@pytest.mark.parametrize("max_norm", MAX_NORMS)
def test_the_wrapper_follows_mlx_optimizers(max_norm: float) -> None:
    want = trajectory(tiny_model, mlx_clip_and_update, max_norm)
    check_clipping(want, max_norm)
    got = trajectory(tiny_model, make_clip_and_update(plain_adamw), max_norm)
    assert not differences(got, want, 1e-6)


def test_a_restored_state_continues_the_same_steps() -> None:
    # Setting the state (a resumed checkpoint) makes MLX's AdamWs initialise again.
    want = trajectory(tiny_model, mlx_clip_and_update, 0.5)
    got = trajectory(tiny_model, make_clip_and_update(plain_adamw), 0.5, restore_after=1)
    assert not differences(got, want, 1e-6)


def test_the_kernels_are_chosen_only_where_they_run(monkeypatch: pytest.MonkeyPatch) -> None:
    gradients = {"w": mx.zeros((2, 3)), "b": mx.zeros((3,))}
    assert fused_adamw_available(make_optimizer(SCHEDULE), gradients) == ON_A_CUDA_GPU
    monkeypatch.setattr(fused_optimizer, "kernels_run_here", lambda dtype: dtype == mx.float32)
    assert fused_adamw_available(make_optimizer(SCHEDULE), gradients)
    assert fused_adamw_available(optim.AdamW(1e-3), gradients)
    assert not fused_adamw_available(make_optimizer(SCHEDULE),
                                     {"w": mx.zeros((2, 3), mx.bfloat16)})
    assert not fused_adamw_available(optim.AdamW(1e-3, bias_correction=True), gradients)
    assert not fused_adamw_available(optim.Adam(1e-3), gradients)
    assert not fused_adamw_available(
        optim.MultiOptimizer([optim.AdamW(1e-3), optim.SGD(1e-3)], [lambda *_: True]),
        gradients)


def compiled_steps(cfg: ModelConfig, dtype: mx.Dtype, steps: int = 3) -> list[Record]:
    """The loss, norm, parameters and optimizer state after each of ``steps`` compiled
    training steps (``build_train_step``) on one batch; the optimizer's state is made by
    the first step."""
    mx.random.seed(0)
    model = StoryModel(cfg)
    model.compute_dtype = dtype
    optimizer = make_optimizer(SCHEDULE)
    step, state = build_train_step(model, optimizer, 0.5)
    batch = mx.random.randint(0, cfg.vocab_size, (4, cfg.context_length + 1))
    records = []
    for _ in range(steps):
        loss, norm = step(batch)
        mx.eval(state, loss, norm)
        records.append({"loss": loss, "norm": norm,
                        **{f"parameters.{path}": value
                           for path, value in tree_flatten(model.parameters())},
                        **{f"optimizer.{path}": value
                           for path, value in tree_flatten(optimizer.state)}})
    return records


def test_the_training_step_takes_the_fused_update_where_available(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The model's portable paths, so that only the update differs wherever this runs (the
    # emulated kernels cannot run inside mx.compile).
    monkeypatch.setattr(cuda, "kernels_enabled", False)
    cfg = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "context_length": 16})
    want = compiled_steps(cfg, mx.float32)
    calls = []

    def counted(*args: Any) -> tuple[list[Updated], mx.array]:
        calls.append(args)
        return plain_adamw(*args)

    monkeypatch.setattr(train_module, "fused_adamw_available", lambda *_: True)
    monkeypatch.setattr(train_module, "fused_clip_and_update", make_clip_and_update(counted))
    got = compiled_steps(cfg, mx.float32)
    assert calls
    assert not differences(got, want, 1e-5)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("max_norm", MAX_NORMS)
def test_the_cuda_kernels_follow_mlx_optimizers(max_norm: float) -> None:
    want = trajectory(Small, mlx_clip_and_update, max_norm)
    check_clipping(want, max_norm)
    assert not differences(trajectory(Small, fused_clip_and_update, max_norm), want, 1e-5)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
def test_the_cuda_kernels_take_several_chunks_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_optimizer, "_MAX_BLOCKS", 2)
    want = trajectory(Small, mlx_clip_and_update, 0.5, steps=2)
    assert not differences(trajectory(Small, fused_clip_and_update, 0.5, steps=2), want, 1e-5)


@pytest.mark.skipif(not ON_A_CUDA_GPU, reason="needs a CUDA GPU")
def test_the_cuda_kernels_follow_mlx_optimizers_on_the_seed_model() -> None:
    # 2,487 chunks: more than the kernels' 1,024 blocks.
    want = trajectory(seed_model, mlx_clip_and_update, 1.0, steps=3)
    assert not differences(trajectory(seed_model, fused_clip_and_update, 1.0, steps=3), want,
                           1e-5)


@pytest.mark.skipif(not ON_A_CUDA_GPU, reason="needs a CUDA GPU")
def test_a_compiled_step_with_the_kernels_follows_mlx_optimizers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole compiled step both ways; the gradients themselves differ in the last bits
    # between runs (atomic additions), hence the looser tolerance.
    cfg = ModelConfig.from_dict({**PRESETS["seed"].to_dict(), "context_length": 128})
    assert fused_adamw_available(make_optimizer(SCHEDULE), {"w": mx.zeros((2, 2))})
    got = compiled_steps(cfg, mx.float32)
    monkeypatch.setattr(train_module, "fused_adamw_available", lambda *_: False)
    want = compiled_steps(cfg, mx.float32)
    assert not differences(got, want, 1e-3)
