"""RMS normalisation with CUDA kernels (saga_model.rms_norm).

On the CPU the wrapper runs around plain MLX operations with the kernels' contracts; on a
CUDA GPU (the device machine) the kernels themselves are checked against them.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error
from mlx.utils import tree_flatten

from saga_model import cuda
from saga_model import model as model_module
from saga_model.config import PRESETS, ModelConfig
from saga_model.model import StoryModel
from saga_model.rms_norm import (
    ResidualNorms,
    cuda_add_backward,
    cuda_add_forward,
    cuda_backward,
    cuda_forward,
    fused_residual_norms_available,
    fused_rms_norm_available,
    make_residual_norms,
    make_rms_norm,
)
from saga_model.train import training_loss

ON_CUDA = fused_rms_norm_available(mx.bfloat16, 128)


def plain_forward(x: mx.array, weight: mx.array, eps: mx.array) -> tuple[mx.array, mx.array]:
    """The forward kernel's contract in plain MLX operations (float32 inside)."""
    wide = x.astype(mx.float32)
    rstd = mx.rsqrt(mx.mean(wide * wide, axis=-1) + eps)
    return (wide * rstd[:, None] * weight.astype(mx.float32)).astype(x.dtype), rstd


def plain_backward(x: mx.array, weight: mx.array, rstd: mx.array, cotangent: mx.array
                   ) -> tuple[mx.array, mx.array]:
    """The backward kernel's contract in plain MLX operations (float32 inside)."""
    normed = x.astype(mx.float32) * rstd[:, None]
    grad = cotangent.astype(mx.float32)
    scaled = grad * weight.astype(mx.float32)
    dot = mx.mean(scaled * normed, axis=-1, keepdims=True)
    return (rstd[:, None] * (scaled - normed * dot)).astype(x.dtype), (grad * normed).sum(0)


def plain_add_forward(x: mx.array, branch: mx.array, weight: mx.array, eps: mx.array
                      ) -> tuple[mx.array, mx.array, mx.array]:
    """The forward kernel's contract with the residual stream: the norm of MLX's sum."""
    stream = x + branch
    return *plain_forward(stream, weight, eps), stream


def plain_add_backward(x: mx.array, weight: mx.array, rstd: mx.array, cotangent: mx.array,
                       stream_cotangent: mx.array) -> tuple[mx.array, mx.array]:
    """The backward kernel's contract with the residual stream (one rounding of the sum)."""
    normed = x.astype(mx.float32) * rstd[:, None]
    grad = cotangent.astype(mx.float32)
    scaled = grad * weight.astype(mx.float32)
    dot = mx.mean(scaled * normed, axis=-1, keepdims=True)
    dx = stream_cotangent.astype(mx.float32) + rstd[:, None] * (scaled - normed * dot)
    return dx.astype(x.dtype), (grad * normed).sum(0)


def autodiff_norm(x: mx.array, weight: mx.array, eps: float) -> mx.array:
    """The model's norm elsewhere: ``mx.fast.rms_norm`` with the gain cast to x's dtype."""
    return mx.fast.rms_norm(x, weight.astype(x.dtype), eps)


def inputs(dtype: mx.Dtype, shape: tuple[int, ...] = (3, 40, 128)
           ) -> tuple[mx.array, mx.array, mx.array]:
    mx.random.seed(4)
    x = (mx.random.normal(shape) * 3 + 0.5).astype(dtype)
    weight = 1 + mx.random.normal((shape[-1],)) * 0.3
    cotangent = mx.random.normal(shape).astype(dtype)
    return x, weight, cotangent


def check_against_autodiff(norm: Callable[[mx.array, mx.array, float], mx.array],
                           dtype: mx.Dtype, tolerance: float,
                           shape: tuple[int, ...] = (3, 40, 128)) -> None:
    x, weight, cotangent = inputs(dtype, shape)
    got_y, (got_dx, got_dw) = mx.vjp(lambda x, w: norm(x, w, 1e-5), [x, weight],
                                     [cotangent])
    want_y, (want_dx, want_dw) = mx.vjp(lambda x, w: autodiff_norm(x, w, 1e-5), [x, weight],
                                        [cotangent])
    assert got_y[0].dtype == dtype and got_dx.dtype == dtype and got_dw.dtype == mx.float32
    assert relative_error(got_y[0], want_y[0]) <= tolerance
    assert relative_error(got_dx, want_dx) <= tolerance
    assert relative_error(got_dw, want_dw) <= tolerance


#: The residual stream's norms as the model computes them elsewhere: MLX's additions, then
#: ``mx.fast.rms_norm``.
AUTODIFF_RESIDUAL_NORMS = ResidualNorms(
    start=lambda x, weight, eps: (x, autodiff_norm(x, weight, eps)),
    add=lambda x, branch, weight, eps: (x + branch, autodiff_norm(x + branch, weight, eps)),
    end=lambda x, branch, weight, eps: autodiff_norm(x + branch, weight, eps))


def residual_chain(norms: ResidualNorms, x: mx.array, branch: mx.array, weights: mx.array
                   ) -> list[mx.array]:
    """A stream through all three norms, each branch read from the norm before it, so that
    every gradient takes both ways: through the stream and through the norms."""
    stream, first = norms.start(x, weights[0], 1e-5)
    stream, second = norms.add(stream, branch + first, weights[1], 1e-5)
    return [first, second, norms.end(stream, second * branch, weights[2], 1e-5)]


def check_residual_norms(norms: ResidualNorms, dtype: mx.Dtype, tolerance: float,
                         shape: tuple[int, ...] = (3, 40, 128)) -> None:
    x, weight, cotangent = inputs(dtype, shape)
    branch = (mx.random.normal(shape) * 2).astype(dtype)
    weights = mx.stack([weight, weight[::-1], 2 - weight])
    cotangents = [cotangent, cotangent[::-1], cotangent * 0.5]
    got, got_grads = mx.vjp(lambda *a: residual_chain(norms, *a), [x, branch, weights],
                            cotangents)
    want, want_grads = mx.vjp(lambda *a: residual_chain(AUTODIFF_RESIDUAL_NORMS, *a),
                              [x, branch, weights], cotangents)
    assert [g.dtype for g in got] == [dtype] * 3
    assert [g.dtype for g in got_grads] == [dtype, dtype, mx.float32]
    for got_array, want_array in zip([*got, *got_grads], [*want, *want_grads], strict=True):
        assert relative_error(got_array, want_array) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_residual_norms_give_autodiffs_values_and_gradients(dtype: mx.Dtype,
                                                                tolerance: float) -> None:
    check_residual_norms(make_residual_norms(plain_forward, plain_add_forward, plain_backward,
                                             plain_add_backward), dtype, tolerance)


def test_a_compiled_training_step_through_the_residual_norms_has_the_models_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The model as it runs on a CUDA GPU (every residual addition inside a norm, the first norm
    # passing the stream through), here with the wrapper around plain operations, compiled as
    # the training step is, against MLX's additions and mx.fast.rms_norm; on the CPU, with no
    # kernels (the emulator's cannot run in a compiled function).
    monkeypatch.setattr(cuda, "kernels_enabled", False)
    cfg = ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "vocab_size": 300,
                                 "n_layers": 2, "d_model": 64})
    mx.random.seed(7)
    model = StoryModel(cfg)
    batch = mx.random.randint(0, 300, (3, 25))

    def loss_and_grads() -> tuple[mx.array, dict[str, mx.array]]:
        step = mx.compile(lambda batch: nn.value_and_grad(model, training_loss)(model, batch))
        with mx.stream(mx.cpu):
            loss, grads = step(batch)
            mx.eval(loss, grads)
        return loss, dict(tree_flatten(grads))

    want_loss, want_grads = loss_and_grads()
    monkeypatch.setattr(model_module, "fused_residual_norms_available", lambda *_: True)
    monkeypatch.setattr(model_module, "fused_residual_norms", make_residual_norms(
        plain_forward, plain_add_forward, plain_backward, plain_add_backward))
    loss, grads = loss_and_grads()
    assert abs(loss.item() - want_loss.item()) <= 1e-6 * want_loss.item()
    errors = {name: relative_error(grads[name], want) for name, want in want_grads.items()}
    assert max(errors.values()) <= 1e-5, errors


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_wrapper_gives_autodiffs_values_and_gradients(dtype: mx.Dtype, tolerance: float
                                                          ) -> None:
    check_against_autodiff(make_rms_norm(plain_forward, plain_backward), dtype, tolerance)


def test_the_kernels_are_chosen_only_where_they_run() -> None:
    assert fused_rms_norm_available(mx.bfloat16, 128) == ON_A_CUDA_GPU
    assert not fused_rms_norm_available(mx.float16, 128)
    assert not fused_rms_norm_available(mx.float32, 100)
    assert fused_residual_norms_available(mx.bfloat16, 128) == ON_A_CUDA_GPU
    assert not fused_residual_norms_available(mx.float32, 100)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
@pytest.mark.parametrize("shape", [(3, 40, 128), (64, 512, 128), (5, 256)])
def test_the_cuda_kernels_give_autodiffs_values_and_gradients(
        dtype: mx.Dtype, tolerance: float, shape: tuple[int, ...]) -> None:
    # (64, 512, 128): more rows than the blocks' warps, so each warp takes several.
    check_against_autodiff(make_rms_norm(cuda_forward, cuda_backward), dtype, tolerance, shape)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
@pytest.mark.parametrize("shape", [(3, 40, 128), (64, 512, 128), (5, 256)])
def test_the_cuda_residual_norms_give_autodiffs_values_and_gradients(
        dtype: mx.Dtype, tolerance: float, shape: tuple[int, ...]) -> None:
    check_residual_norms(make_residual_norms(cuda_forward, cuda_add_forward, cuda_backward,
                                             cuda_add_backward), dtype, tolerance, shape)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_the_cuda_residual_kernels_add_as_mlx_does_and_normalise_as_the_norm(
        dtype: mx.Dtype) -> None:
    # The stream the layers after read and the norm the model reads are bit for bit what MLX's
    # addition and the norm's own kernel give (large and small values, so that the sums round).
    x, weight, _ = inputs(dtype, (70, 128))
    scales = mx.array([1e-3, 1.0, 300.0])[mx.arange(70) % 3, None]
    branch = (mx.random.normal(x.shape) * scales).astype(dtype)
    eps = mx.array([1e-5])
    y, rstd, stream = cuda_add_forward(x, branch, weight.astype(dtype), eps)
    assert mx.array_equal(stream, x + branch)
    want_y, want_rstd = cuda_forward(x + branch, weight.astype(dtype), eps)
    assert mx.array_equal(y, want_y) and mx.array_equal(rstd, want_rstd)
    # The backward kernel with the stream's gradient is the one without it, plus that gradient.
    cotangent, stream_cotangent = (mx.random.normal(x.shape).astype(dtype) for _ in range(2))
    dx, d_weight = cuda_add_backward(stream, weight.astype(dtype), rstd, cotangent,
                                     stream_cotangent)
    norm_dx, want_d_weight = cuda_backward(stream, weight.astype(dtype), rstd, cotangent)
    assert mx.array_equal(d_weight, want_d_weight)
    assert relative_error(dx, norm_dx + stream_cotangent) <= (1e-6 if dtype == mx.float32
                                                              else 1e-2)
