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
    rope_turns,
    sdpa_attention,
)
from saga_model.rotary import ops_heads

ON_CUDA = flash_attention_available(mx.bfloat16, 32, 512)
BASE = 10000.0
Attention = Callable[[mx.array, int, float, float], mx.array]


def turned_heads(projection: mx.array, turns: mx.array, heads: int
                 ) -> tuple[mx.array, mx.array, mx.array]:
    """q, k, v (B, H, L, D) of the projection, q and k turned by ``turns``, in its dtype."""
    batch, length, _ = projection.shape
    parts = projection.reshape(batch, length, 3, heads, -1).transpose(2, 0, 3, 1, 4)
    half = parts.shape[-1] // 2
    cos, sin = turns[..., 0], turns[..., 1]

    def turn(x: mx.array) -> mx.array:
        x1, x2 = x[..., :half].astype(mx.float32), x[..., half:].astype(mx.float32)
        turned = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
        return turned.astype(x.dtype)

    return turn(parts[0]), turn(parts[1]), parts[2]


def causal_probabilities(q: mx.array, k: mx.array, lse: mx.array, scale: mx.array
                         ) -> mx.array:
    """softmax(scale * q k^T) under the causal mask, from the base-two log-sum-exp."""
    length = q.shape[2]
    scores = (q.astype(mx.float32) @ k.astype(mx.float32).swapaxes(-1, -2)) * scale
    future = mx.triu(mx.ones((length, length), mx.bool_), k=1)
    return mx.where(future, 0.0, mx.exp(scores - lse[..., None] * math.log(2)))


def plain_forward(projection: mx.array, turns: mx.array, scale: mx.array, heads: int
                  ) -> tuple[mx.array, mx.array]:
    """The forward kernel's contract in plain MLX operations."""
    q, k, v = turned_heads(projection, turns, heads)
    length = q.shape[2]
    scores = (q.astype(mx.float32) @ k.astype(mx.float32).swapaxes(-1, -2)) * scale
    future = mx.triu(mx.ones((length, length), mx.bool_), k=1)
    lse = mx.logsumexp(mx.where(future, -mx.inf, scores), axis=-1) / math.log(2)
    out = causal_probabilities(q, k, lse, scale) @ v.astype(mx.float32)
    return out.transpose(0, 2, 1, 3).astype(projection.dtype), lse


def plain_backward(projection: mx.array, turns: mx.array, out: mx.array, lse: mx.array,
                   d_out: mx.array, scale: mx.array, heads: int) -> mx.array:
    """The backward kernel's contract in plain MLX operations (flash attention's backward
    pass: dS = P * (dO V^T - rowsum(dO * O)); dq and dk turned back)."""
    q, k, v = turned_heads(projection, turns, heads)
    p = causal_probabilities(q, k, lse, scale)
    d_out = d_out.astype(mx.float32).reshape(out.shape).transpose(0, 2, 1, 3)
    delta = (d_out * out.astype(mx.float32).transpose(0, 2, 1, 3)).sum(-1, keepdims=True)
    ds = p * (d_out @ v.astype(mx.float32).swapaxes(-1, -2) - delta)
    dq = scale * ds @ k.astype(mx.float32)
    dk = scale * ds.swapaxes(-1, -2) @ q.astype(mx.float32)
    dv = p.swapaxes(-1, -2) @ d_out
    half = q.shape[-1] // 2
    cos, sin = turns[..., 0], turns[..., 1]

    def turn_back(g: mx.array) -> mx.array:
        g1, g2 = g[..., :half], g[..., half:]
        return mx.concatenate([g1 * cos + g2 * sin, g2 * cos - g1 * sin], axis=-1)

    parts = mx.stack([turn_back(dq), turn_back(dk), dv])  # (3, B, H, L, D)
    return parts.transpose(1, 3, 0, 2, 4).reshape(projection.shape).astype(projection.dtype)


def random_projection(shape: tuple[int, int, int, int], dtype: mx.Dtype = mx.bfloat16
                      ) -> mx.array:
    """A projection (B, L, 3 * H * D) for heads of ``shape`` (B, H, L, D)."""
    batch, heads, length, head_dim = shape
    return mx.random.normal((batch, length, 3 * heads * head_dim)).astype(dtype)


def check_against_autodiff(attention: Attention, dtype: mx.Dtype, tolerance: float,
                           shape: tuple[int, int, int, int] = (2, 3, 37, 16)) -> None:
    mx.random.seed(5)
    batch, heads, length, head_dim = shape
    projection = random_projection(shape, dtype)
    cotangent = mx.random.normal((batch, length, heads * head_dim)).astype(dtype)
    scale = head_dim**-0.5
    got, got_grads = mx.vjp(lambda p: [attention(p, heads, BASE, scale)], [projection],
                            [cotangent])

    def reference(p: mx.array) -> list[mx.array]:
        q, k, v = ops_heads(p.astype(mx.float32), heads, BASE)
        return [sdpa_attention(q, k, v, scale)]

    want, want_grads = mx.vjp(reference, [projection], [cotangent.astype(mx.float32)])
    assert got[0].dtype == dtype and got[0].shape == want[0].shape
    assert relative_error(got[0], want[0]) <= tolerance
    assert got_grads[0].dtype == dtype and got_grads[0].shape == projection.shape
    assert relative_error(got_grads[0], want_grads[0]) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_wrapper_gives_autodiffs_output_and_gradients(dtype: mx.Dtype, tolerance: float
                                                           ) -> None:
    check_against_autodiff(make_attention(plain_forward, plain_backward), dtype, tolerance)


def test_the_attention_is_causal() -> None:
    """A change to the last position's key and value leaves the earlier outputs alone."""
    mx.random.seed(2)
    projection = random_projection((1, 2, 9, 16), mx.float32)
    attention = make_attention(plain_forward, plain_backward)
    before = attention(projection, 2, BASE, 0.25)
    last = mx.zeros((1, 9, 96), mx.bool_)
    last[:, -1, 32:] = True
    after = attention(mx.where(last, 5.0, projection), 2, BASE, 0.25)
    assert mx.allclose(before[:, :-1], after[:, :-1])
    assert not mx.allclose(before[:, -1], after[:, -1])


def test_the_turns_are_mx_fast_ropes() -> None:
    """Turning with rope_turns is mx.fast.rope's rotation (non-traditional, offset 0)."""
    mx.random.seed(6)
    projection = random_projection((2, 3, 20, 32), mx.float32)
    got = turned_heads(projection, rope_turns(20, 32, BASE), 3)
    for got_part, want_part in zip(got, ops_heads(projection, 3, BASE), strict=True):
        assert relative_error(got_part, want_part) <= 1e-5


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
    batch, heads, length, head_dim = shape
    projection = random_projection(shape)
    turns = rope_turns(length, head_dim, BASE)
    d_out = mx.random.normal((batch, length, heads, head_dim)).astype(mx.bfloat16)
    scale = mx.array([head_dim**-0.5], mx.float32)
    out, lse = cuda_forward(projection, turns, scale, heads)
    want_out, want_lse = plain_forward(projection, turns, scale, heads)
    assert relative_error(out, want_out) <= 1e-2
    assert mx.abs(lse - want_lse).max().item() <= 1e-2
    got = cuda_backward(projection, turns, out, lse, d_out, scale, heads)
    want = plain_backward(projection, turns, out, lse, d_out, scale, heads)
    parts = heads * head_dim
    assert relative_error(got[..., 2 * parts:], want[..., 2 * parts:]) <= 2e-2  # values
    if length == 1:  # one position: the softmax is constant (zero up to rounding)
        assert mx.abs(got[..., : 2 * parts]).max().item() <= 1e-6
    else:
        assert relative_error(got[..., :parts], want[..., :parts]) <= 2e-2
        assert relative_error(got[..., parts: 2 * parts], want[..., parts: 2 * parts]) <= 2e-2


@needs_cuda
def test_the_cuda_kernels_give_autodiffs_output_and_gradients() -> None:
    check_against_autodiff(flash_attention, mx.bfloat16, 2e-2, shape=(2, 4, 300, 32))


@needs_cuda
def test_the_cuda_kernels_read_arrays_at_any_offset() -> None:
    """Views that start two bytes into their buffer take the kernels' unaligned loads."""
    mx.random.seed(3)
    batch, heads, length, head_dim = 1, 2, 100, 32
    size = batch * length * 3 * heads * head_dim
    projection = mx.random.normal((size + 1,)).astype(mx.bfloat16)[1:].reshape(
        batch, length, 3 * heads * head_dim)
    turns = rope_turns(length, head_dim, BASE)
    scale = mx.array([0.2], mx.float32)
    d_out = mx.random.normal((size // 3 + 1,)).astype(mx.bfloat16)[1:].reshape(
        batch, length, heads, head_dim)
    out, lse = cuda_forward(projection, turns, scale, heads)
    want_out, _ = plain_forward(projection, turns, scale, heads)
    assert relative_error(out, want_out) <= 1e-2
    got = cuda_backward(projection, turns, out, lse, d_out, scale, heads)
    want = plain_backward(projection, turns, out, lse, d_out, scale, heads)
    assert relative_error(got, want) <= 2e-2
