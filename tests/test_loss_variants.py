"""The head and loss with a hand-written gradient equal autodiff's (benchmarks/loss_variants.py).

Tolerances: in float32 the losses and both gradients agree with the plain implementation to
1e-5 relative (the same arithmetic in another order). In bfloat16 both implementations are
compared with float32 arithmetic on the same bfloat16 inputs: the hand-written one must be
close (mean loss within 0.005 nats, gradients within 2% of their largest entry) and its
gradients no further off than autodiff's (1.25x, plus 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest

from benchmarks import loss_variants
from benchmarks.loss_variants import head_losses, plain_head_losses

CHUNKINGS = [None, 7, 10_000]


def inputs(dtype: mx.Dtype, seed: int = 0) -> tuple[mx.array, ...]:
    """Hidden states, a float32 head, targets and a cotangent (fresh random values)."""
    mx.random.seed(seed)
    hidden = mx.random.normal((3, 20, 16)).astype(dtype)
    weight = mx.random.normal((500, 16))
    targets = mx.random.randint(0, 500, (3, 20))
    cotangent = mx.random.uniform(shape=(3, 20))
    return hidden, weight, targets, cotangent


def value_and_grads(losses: Callable[..., mx.array], hidden: mx.array, weight: mx.array,
                    targets: mx.array, cotangent: mx.array, **kwargs: object
                    ) -> tuple[mx.array, mx.array, mx.array]:
    """Weighted loss sum, its gradients to the hidden states and the head (all float32)."""

    def total(h: mx.array, w: mx.array) -> mx.array:
        return (losses(h, w, targets, **kwargs) * cotangent).sum()

    value, (d_hidden, d_weight) = mx.value_and_grad(total, argnums=(0, 1))(hidden, weight)
    return value, d_hidden.astype(mx.float32), d_weight


def relative_error(got: mx.array, want: mx.array) -> float:
    return (mx.abs(got - want).max() / mx.abs(want).max()).item()


@pytest.mark.parametrize("chunk_rows", CHUNKINGS)
def test_float32_losses_and_gradients_equal_autodiff(chunk_rows: int | None) -> None:
    hidden, weight, targets, cotangent = inputs(mx.float32)
    want = value_and_grads(plain_head_losses, hidden, weight, targets, cotangent)
    got = value_and_grads(head_losses, hidden, weight, targets, cotangent,
                          chunk_rows=chunk_rows)
    losses = head_losses(hidden, weight, targets, chunk_rows=chunk_rows)
    assert losses.shape == targets.shape and losses.dtype == mx.float32
    assert mx.allclose(losses, plain_head_losses(hidden, weight, targets), rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        assert relative_error(g, w) < 1e-5


@pytest.mark.parametrize("chunk_rows", CHUNKINGS)
def test_bfloat16_is_as_close_to_float32_as_autodiff(chunk_rows: int | None) -> None:
    hidden, weight, targets, cotangent = inputs(mx.bfloat16, seed=1)
    weight = weight.astype(mx.bfloat16).astype(mx.float32)  # the head sees it rounded anyway
    exact = value_and_grads(plain_head_losses, hidden.astype(mx.float32), weight, targets,
                            cotangent)
    autodiff = value_and_grads(plain_head_losses, hidden, weight, targets, cotangent)
    got = value_and_grads(head_losses, hidden, weight, targets, cotangent,
                          chunk_rows=chunk_rows)
    assert got[1].dtype == mx.float32 and head_losses(hidden, weight, targets).dtype == mx.float32
    n = targets.size
    assert abs(got[0].item() - exact[0].item()) / n < 0.005
    for g, a, e in zip(got[1:], autodiff[1:], exact[1:], strict=True):
        assert relative_error(g, e) < 0.02
        assert relative_error(g, e) <= 1.25 * relative_error(a, e) + 1e-3


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_compiled_step_matches_uncompiled(chunk_rows: int | None) -> None:
    hidden, weight, targets, cotangent = inputs(mx.float32, seed=2)

    def step(h: mx.array, w: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return value_and_grads(head_losses, h, w, targets, cotangent, chunk_rows=chunk_rows)

    for g, w in zip(mx.compile(step)(hidden, weight), step(hidden, weight), strict=True):
        assert mx.allclose(g, w, rtol=1e-5, atol=1e-6)


def test_fused_kernel_and_composed_loss_agree(monkeypatch) -> None:
    # The CPU composes the loss; GPUs take mx.fast.cross_entropy (run here by its CPU fallback).
    hidden, weight, targets, cotangent = inputs(mx.float32, seed=3)
    composed = value_and_grads(head_losses, hidden, weight, targets, cotangent)
    if not hasattr(mx.fast, "cross_entropy"):
        pytest.skip("this MLX has no mx.fast.cross_entropy")
    monkeypatch.setattr(loss_variants, "fused_kernel_available", lambda: True)
    fused = value_and_grads(head_losses, hidden, weight, targets, cotangent, chunk_rows=9)
    for g, w in zip(fused, composed, strict=True):
        assert relative_error(g, w) < 1e-5
