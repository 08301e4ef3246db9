"""The linear layers' weight gradient by a tensor-core kernel (saga_model.linear).

On the CPU the wrapper runs around a plain MLX product with the kernel's contract and is
checked against autodiff of ``x @ W^T``; on a CUDA GPU (the device machine) the kernel itself
is.
"""

from __future__ import annotations

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model.linear import (
    cuda_weight_gradient,
    fused_linear,
    fused_linear_available,
    make_linear,
)

ON_CUDA = fused_linear_available(mx.bfloat16, 128, 128)


def plain_weight_gradient(d_out: mx.array, x: mx.array) -> mx.array:
    """The kernel's contract in a plain MLX product: ``d_out^T x`` in float32."""
    return d_out.astype(mx.float32).T @ x.astype(mx.float32)


def check_against_autodiff(linear: object, dtype: mx.Dtype, tolerance: float,
                           shape: tuple[int, ...] = (2, 37, 128), out_dims: int = 256) -> None:
    mx.random.seed(4)
    x = mx.random.normal(shape).astype(dtype)
    weight = mx.random.normal((out_dims, shape[-1])) * 0.05
    cotangent = mx.random.normal((*shape[:-1], out_dims)).astype(dtype)
    got, got_grads = mx.vjp(lambda x, w: [linear(x, w)], [x, weight], [cotangent])
    want, want_grads = mx.vjp(lambda x, w: [x @ w.astype(x.dtype).T], [x, weight], [cotangent])
    assert got[0].dtype == dtype and relative_error(got[0], want[0]) == 0
    assert got_grads[0].dtype == dtype and relative_error(got_grads[0], want_grads[0]) == 0
    assert got_grads[1].dtype == mx.float32 and got_grads[1].shape == weight.shape
    assert relative_error(got_grads[1], want_grads[1]) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 1e-2)])
def test_the_wrapper_gives_autodiffs_output_and_gradients(dtype: mx.Dtype, tolerance: float
                                                           ) -> None:
    check_against_autodiff(make_linear(plain_weight_gradient), dtype, tolerance)


def test_the_kernel_is_chosen_only_where_it_runs() -> None:
    assert fused_linear_available(mx.bfloat16, 128, 384) == ON_A_CUDA_GPU
    assert not fused_linear_available(mx.float32, 128, 384)
    assert not fused_linear_available(mx.bfloat16, 96, 384)


needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize(("rows", "out_dims", "in_dims"),
                         [(131072, 384, 128), (5000, 128, 384), (77, 128, 256), (1, 128, 128)])
def test_the_cuda_kernel_keeps_the_contract(rows: int, out_dims: int, in_dims: int) -> None:
    mx.random.seed(6)
    d_out = mx.random.normal((rows, out_dims)).astype(mx.bfloat16)
    x = mx.random.normal((rows, in_dims)).astype(mx.bfloat16)
    got = cuda_weight_gradient(d_out, x)
    assert got.dtype == mx.float32 and got.shape == (out_dims, in_dims)
    assert relative_error(got, plain_weight_gradient(d_out, x)) <= 1e-4


@needs_cuda
def test_the_cuda_kernel_reads_arrays_at_any_offset() -> None:
    """Views that start two bytes into their buffer take the kernel's unaligned loads."""
    mx.random.seed(7)
    d_out, x = (mx.random.normal((300 * 128 + 1,)).astype(mx.bfloat16)[1:].reshape(300, 128)
                for _ in range(2))
    got = cuda_weight_gradient(d_out, x)
    assert relative_error(got, plain_weight_gradient(d_out, x)) <= 1e-4


@needs_cuda
def test_the_cuda_layer_gives_autodiffs_output_and_gradients() -> None:
    check_against_autodiff(fused_linear, mx.bfloat16, 1e-2, shape=(3, 200, 128),
                           out_dims=384)
