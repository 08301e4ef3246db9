"""RMS normalisation with CUDA kernels (saga_model.rms_norm).

On the CPU the wrapper runs around plain MLX operations with the kernels' contracts; on a
CUDA GPU (the device machine) the kernels themselves are checked against them.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model.rms_norm import (
    cuda_backward,
    cuda_forward,
    fused_rms_norm_available,
    make_rms_norm,
)

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


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_wrapper_gives_autodiffs_values_and_gradients(dtype: mx.Dtype, tolerance: float
                                                          ) -> None:
    check_against_autodiff(make_rms_norm(plain_forward, plain_backward), dtype, tolerance)


def test_the_kernels_are_chosen_only_where_they_run() -> None:
    assert fused_rms_norm_available(mx.bfloat16, 128) == ON_A_CUDA_GPU
    assert not fused_rms_norm_available(mx.float16, 128)
    assert not fused_rms_norm_available(mx.float32, 100)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
@pytest.mark.parametrize("shape", [(3, 40, 128), (64, 512, 128), (5, 256)])
def test_the_cuda_kernels_give_autodiffs_values_and_gradients(
        dtype: mx.Dtype, tolerance: float, shape: tuple[int, ...]) -> None:
    # (64, 512, 128): more rows than the blocks' warps, so each warp takes several.
    check_against_autodiff(make_rms_norm(cuda_forward, cuda_backward), dtype, tolerance, shape)
