"""Causal attention by flash-attention kernels (saga_model.attention).

On the CPU the wrapper runs around plain MLX operations with the kernels' contracts (the
output in the projection's layout and the base-two log-sum-exp; the three gradients from
them) and is checked against autodiff of ``mx.fast.scaled_dot_product_attention``; on a CUDA
GPU (the device machine) the kernels themselves are.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model.attention import (
    cuda_backward,
    cuda_forward,
    flash_attention,
    flash_attention_available,
    make_attention,
    sdpa_attention,
)

ON_CUDA = flash_attention_available(mx.bfloat16, 32, 512)
Attention = Callable[[mx.array, mx.array, mx.array, float], mx.array]


def causal_probabilities(q: mx.array, k: mx.array, lse: mx.array, scale: mx.array
                         ) -> mx.array:
    """softmax(scale * q k^T) under the causal mask, from the base-two log-sum-exp."""
    length = q.shape[2]
    scores = (q.astype(mx.float32) @ k.astype(mx.float32).swapaxes(-1, -2)) * scale
    future = mx.triu(mx.ones((length, length), mx.bool_), k=1)
    return mx.where(future, 0.0, mx.exp(scores - lse[..., None] * math.log(2)))


def plain_forward(q: mx.array, k: mx.array, v: mx.array, scale: mx.array
                  ) -> tuple[mx.array, mx.array]:
    """The forward kernel's contract in plain MLX operations."""
    length = q.shape[2]
    scores = (q.astype(mx.float32) @ k.astype(mx.float32).swapaxes(-1, -2)) * scale
    future = mx.triu(mx.ones((length, length), mx.bool_), k=1)
    lse = mx.logsumexp(mx.where(future, -mx.inf, scores), axis=-1) / math.log(2)
    out = causal_probabilities(q, k, lse, scale) @ v.astype(mx.float32)
    return out.transpose(0, 2, 1, 3).astype(q.dtype), lse


def plain_backward(q: mx.array, k: mx.array, v: mx.array, out: mx.array, lse: mx.array,
                   d_out: mx.array, scale: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The backward kernels' contract in plain MLX operations (flash attention's backward
    pass: dS = P * (dO V^T - rowsum(dO * O)))."""
    p = causal_probabilities(q, k, lse, scale)
    d_out = d_out.astype(mx.float32).transpose(0, 2, 1, 3)
    delta = (d_out * out.astype(mx.float32).transpose(0, 2, 1, 3)).sum(-1, keepdims=True)
    ds = p * (d_out @ v.astype(mx.float32).swapaxes(-1, -2) - delta)
    dq = scale * ds @ k.astype(mx.float32)
    dk = scale * ds.swapaxes(-1, -2) @ q.astype(mx.float32)
    dv = p.swapaxes(-1, -2) @ d_out
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)


def check_against_autodiff(attention: Attention, dtype: mx.Dtype, tolerance: float,
                           shape: tuple[int, int, int, int] = (2, 3, 37, 16)) -> None:
    mx.random.seed(5)
    batch, heads, length, head_dim = shape
    q, k, v = (mx.random.normal(shape).astype(dtype) for _ in range(3))
    cotangent = mx.random.normal((batch, length, heads * head_dim)).astype(dtype)
    scale = head_dim**-0.5
    got, got_grads = mx.vjp(lambda *qkv: [attention(*qkv, scale)], [q, k, v], [cotangent])

    def reference(*qkv: mx.array) -> list[mx.array]:
        wide = [part.astype(mx.float32) for part in qkv]
        return [sdpa_attention(*wide, scale)]

    want, want_grads = mx.vjp(reference, [q, k, v], [cotangent.astype(mx.float32)])
    assert got[0].dtype == dtype and got[0].shape == want[0].shape
    assert relative_error(got[0], want[0]) <= tolerance
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        assert got_grad.dtype == dtype and got_grad.shape == q.shape
        assert relative_error(got_grad, want_grad) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_wrapper_gives_autodiffs_output_and_gradients(dtype: mx.Dtype, tolerance: float
                                                           ) -> None:
    check_against_autodiff(make_attention(plain_forward, plain_backward), dtype, tolerance)


def test_the_attention_is_causal() -> None:
    """A change to the last position's key and value leaves the earlier outputs alone."""
    mx.random.seed(2)
    q, k, v = (mx.random.normal((1, 2, 9, 16)) for _ in range(3))
    attention = make_attention(plain_forward, plain_backward)
    before = attention(q, k, v, 0.25)
    last = mx.zeros((1, 2, 9, 1), mx.bool_)
    last[:, :, -1] = True
    after = attention(q, mx.where(last, 5.0, k), mx.where(last, -3.0, v), 0.25)
    assert mx.allclose(before[:, :-1], after[:, :-1])
    assert not mx.allclose(before[:, -1], after[:, -1])


def test_the_kernels_are_chosen_only_where_they_run() -> None:
    assert flash_attention_available(mx.bfloat16, 32, 512) == ON_A_CUDA_GPU
    assert flash_attention_available(mx.bfloat16, 64, 256) == ON_A_CUDA_GPU
    assert not flash_attention_available(mx.float32, 32, 512)
    assert not flash_attention_available(mx.bfloat16, 48, 512)


def test_sequences_that_overflow_a_blocks_shared_memory_take_mx_fast() -> None:
    """A block holds two whole-sequence tiles: 99 KB (every sm_80+ GPU) bounds the length."""
    assert not flash_attention_available(mx.bfloat16, 64, 512)
    assert not flash_attention_available(mx.bfloat16, 32, 1024)


needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("shape", [(2, 4, 512, 32), (1, 3, 130, 32), (2, 2, 64, 64),
                                   (1, 2, 77, 16), (3, 1, 1, 32)])
def test_the_cuda_kernels_keep_the_contract(shape: tuple[int, int, int, int]) -> None:
    mx.random.seed(11)
    q, k, v = (mx.random.normal(shape).astype(mx.bfloat16) for _ in range(3))
    batch, heads, length, head_dim = shape
    d_out = mx.random.normal((batch, length, heads, head_dim)).astype(mx.bfloat16)
    scale = mx.array([head_dim**-0.5], mx.float32)
    out, lse = cuda_forward(q, k, v, scale)
    want_out, want_lse = plain_forward(q, k, v, scale)
    assert relative_error(out, want_out) <= 1e-2
    assert mx.abs(lse - want_lse).max().item() <= 1e-2
    dq, dk, dv = cuda_backward(q, k, v, out, lse, d_out, scale)
    want_dq, want_dk, want_dv = plain_backward(q, k, v, out, lse, d_out, scale)
    assert relative_error(dv, want_dv) <= 2e-2
    for got_grad, want_grad in ((dq, want_dq), (dk, want_dk)):
        if length == 1:  # one position: the softmax is constant (zero up to rounding)
            assert mx.abs(got_grad).max().item() <= 1e-6
        else:
            assert relative_error(got_grad, want_grad) <= 2e-2


@needs_cuda
def test_the_cuda_kernels_give_autodiffs_output_and_gradients() -> None:
    check_against_autodiff(flash_attention, mx.bfloat16, 2e-2, shape=(2, 4, 300, 32))


@needs_cuda
def test_the_cuda_kernels_read_arrays_at_any_offset() -> None:
    """Views that start two bytes into their buffer take the kernels' unaligned loads."""
    mx.random.seed(3)
    shape = (1, 2, 100, 32)
    size = math.prod(shape)
    q, k, v = (mx.random.normal((size + 1,)).astype(mx.bfloat16)[1:].reshape(shape)
               for _ in range(3))
    scale = mx.array([0.2], mx.float32)
    d_out = mx.random.normal((size + 1,)).astype(mx.bfloat16)[1:].reshape(1, 100, 2, 32)
    out, lse = cuda_forward(q, k, v, scale)
    want_out, _ = plain_forward(q, k, v, scale)
    assert relative_error(out, want_out) <= 1e-2
    got = cuda_backward(q, k, v, out, lse, d_out, scale)
    want = plain_backward(q, k, v, out, lse, d_out, scale)
    for got_grad, want_grad in zip(got, want, strict=True):
        assert relative_error(got_grad, want_grad) <= 2e-2
