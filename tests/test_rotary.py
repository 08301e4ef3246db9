"""The attention's heads split and rotated in one pass each way (saga_model.rotary).

On the CPU the wrapper runs around plain MLX operations with the kernels' contracts and is
checked against autodiff of the model's portable path (``ops_heads``); on a CUDA GPU (the
device machine) the kernels themselves are.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model.rotary import (
    Heads,
    cuda_backward,
    cuda_forward,
    fused_heads_available,
    make_heads,
    ops_heads,
)

ON_CUDA = fused_heads_available(mx.bfloat16, 32)
BASE = 10000.0


def plain_forward(projection: mx.array, n_heads: int, log2_base: mx.array) -> Heads:
    """The forward kernel's contract in plain MLX operations."""
    return ops_heads(projection, n_heads, 2 ** log2_base.item())


def plain_backward(dq: mx.array, dk: mx.array, dv: mx.array, log2_base: mx.array
                   ) -> mx.array:
    """The backward kernel's contract in plain MLX operations: q's and k's gradients turned
    back (``mx.fast.rope`` at minus the positions), the three heads back in the projection's
    layout."""
    batch, heads, length, head_dim = dq.shape
    base = 2 ** log2_base.item()
    parts = [mx.fast.rope(g, head_dim, traditional=False, base=base, scale=-1.0, offset=0)
             for g in (dq, dk)] + [dv]
    return mx.concatenate([g.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
                           for g in parts], axis=-1)


def check_against_autodiff(heads: Callable[[mx.array, int, float], Heads], dtype: mx.Dtype,
                           tolerance: float, shape: tuple[int, int] = (2, 37),
                           n_heads: int = 4, head_dim: int = 32) -> None:
    mx.random.seed(8)
    batch, length = shape
    projection = mx.random.normal((batch, length, 3 * n_heads * head_dim)).astype(dtype)
    cotangents = [mx.random.normal((batch, n_heads, length, head_dim)).astype(dtype)
                  for _ in range(3)]
    got, (got_grad,) = mx.vjp(lambda p: list(heads(p, n_heads, BASE)), [projection],
                              cotangents)
    want, (want_grad,) = mx.vjp(lambda p: list(ops_heads(p, n_heads, BASE)), [projection],
                                cotangents)
    for got_part, want_part in zip(got, want, strict=True):
        assert got_part.dtype == dtype and got_part.shape == want_part.shape
        assert relative_error(got_part, want_part) <= tolerance
    assert got_grad.dtype == dtype and got_grad.shape == projection.shape
    assert relative_error(got_grad, want_grad) <= tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 1e-2)])
def test_the_wrapper_gives_autodiffs_heads_and_gradient(dtype: mx.Dtype, tolerance: float
                                                         ) -> None:
    check_against_autodiff(make_heads(plain_forward, plain_backward), dtype, tolerance)


def test_the_values_are_the_projections_third_part_in_heads() -> None:
    projection = mx.arange(2 * 3 * 3 * 2 * 16, dtype=mx.float32).reshape(2, 3, 96)
    _, _, v = ops_heads(projection, 2, BASE)
    assert v.shape == (2, 2, 3, 16)
    assert mx.array_equal(v[1, 0, 2], projection[1, 2, 64:80])


def test_the_kernels_are_chosen_only_where_they_run() -> None:
    assert fused_heads_available(mx.bfloat16, 32) == ON_A_CUDA_GPU
    assert not fused_heads_available(mx.float16, 32)
    assert not fused_heads_available(mx.float32, 24)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 1e-2)])
@pytest.mark.parametrize(("shape", "n_heads", "head_dim"), [((2, 37), 4, 32),
                                                            ((16, 512), 4, 32),
                                                            ((3, 20), 2, 64)])
def test_the_cuda_kernels_give_autodiffs_heads_and_gradient(
        dtype: mx.Dtype, tolerance: float, shape: tuple[int, int], n_heads: int,
        head_dim: int) -> None:
    check_against_autodiff(make_heads(cuda_forward, cuda_backward), dtype, tolerance, shape,
                           n_heads, head_dim)
