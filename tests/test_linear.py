"""The linear product whose weight gradient is summed over chunks of rows (saga_model.linear).

On the CPU the chunked gradient is checked against autodiff of ``x @ W^T`` with small chunks;
on a CUDA GPU (the device machine) with the model's chunk size.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model.linear import CHUNK_ROWS, chunked_linear, chunked_linear_available, make_linear


def plain_linear(x: mx.array, weight: mx.array) -> mx.array:
    return x @ weight.astype(x.dtype).T


def check_against_autodiff(linear: Callable[[mx.array, mx.array], mx.array],
                           shape: tuple[int, ...], dtype: mx.Dtype, tolerance: float
                           ) -> None:
    mx.random.seed(4)
    x = mx.random.normal(shape).astype(dtype)
    weight = mx.random.normal((24, shape[-1]))
    cotangent = mx.random.normal((*shape[:-1], 24)).astype(dtype)
    got, got_grads = mx.vjp(linear, [x, weight], [cotangent])
    want, want_grads = mx.vjp(plain_linear, [x, weight], [cotangent])
    assert got[0].dtype == dtype and mx.array_equal(got[0], want[0])
    assert got_grads[0].dtype == dtype and got_grads[1].dtype == mx.float32
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        assert got_grad.shape == want_grad.shape
        assert relative_error(got_grad, want_grad) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 1e-2)])
def test_the_chunked_weight_gradient_is_autodiffs(dtype: mx.Dtype, tolerance: float) -> None:
    check_against_autodiff(make_linear(8), (3, 16, 40), dtype, tolerance)


def test_every_chunk_counts() -> None:
    """A gradient that only the last chunk's rows carry reaches the weight."""
    x = mx.zeros((4, 6))
    x[-1] = 1.0
    d_out = mx.ones((4, 3))
    _, (_, d_weight) = mx.vjp(make_linear(2), [x, mx.zeros((3, 6))], [d_out])
    assert mx.array_equal(d_weight, mx.ones((3, 6)))


def test_it_is_chosen_only_on_a_cuda_gpu_for_whole_chunks() -> None:
    rows = mx.zeros((2 * CHUNK_ROWS, 8), mx.bfloat16)
    assert chunked_linear_available(rows) == ON_A_CUDA_GPU
    assert not chunked_linear_available(mx.zeros((CHUNK_ROWS, 8), mx.bfloat16))
    assert not chunked_linear_available(mx.zeros((2 * CHUNK_ROWS + 1, 8), mx.bfloat16))


@pytest.mark.skipif(not ON_A_CUDA_GPU, reason="needs a CUDA GPU")
def test_the_models_chunks_give_autodiffs_gradient_on_the_gpu() -> None:
    check_against_autodiff(chunked_linear, (4, 2 * CHUNK_ROWS // 4, 128), mx.bfloat16, 1e-2)
