"""Token embeddings in the compute dtype with CUDA kernels (saga_model.embedding).

On the CPU the wrapper runs around plain MLX operations with the kernels' contracts; on a
CUDA GPU (the device machine) the kernels themselves are checked against autodiff.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU

from saga_model.embedding import (
    cuda_gather,
    cuda_scatter,
    embed_tokens,
    fused_embedding_available,
    make_embedding,
)

ON_CUDA = fused_embedding_available(mx.bfloat16, 128)


def plain_gather(weight: mx.array, tokens: mx.array, dtype: mx.Dtype) -> mx.array:
    """The gather kernel's contract in plain MLX operations."""
    return weight[tokens].astype(dtype)


def plain_scatter(cotangent: mx.array, tokens: mx.array, vocab: int) -> mx.array:
    """The scatter kernel's contract in plain MLX operations."""
    dims = cotangent.shape[-1]
    rows = cotangent.reshape(-1, dims).astype(mx.float32)
    return mx.zeros((vocab, dims)).at[tokens.reshape(-1)].add(rows)


def autodiff_lookup(weight: mx.array, tokens: mx.array, dtype: mx.Dtype) -> mx.array:
    """The lookup as the model wrote it before the kernels: nn.Embedding's, then a cast."""
    return weight[tokens].astype(dtype)


def check_against_autodiff(embedding: Callable[[mx.array, mx.array, mx.Dtype], mx.array],
                           dtype: mx.Dtype, shape: tuple[int, int] = (3, 50),
                           vocab: int = 40, dims: int = 16) -> None:
    mx.random.seed(7)
    weight = mx.random.normal((vocab, dims))
    # Few ids for many positions: most rows of the table gather several gradients.
    tokens = mx.random.randint(0, vocab, shape)
    cotangent = mx.random.normal((*shape, dims)).astype(dtype)
    got, (got_grad,) = mx.vjp(lambda w: embedding(w, tokens, dtype), [weight], [cotangent])
    want, (want_grad,) = mx.vjp(lambda w: autodiff_lookup(w, tokens, dtype), [weight],
                                [cotangent])
    assert got[0].dtype == dtype and got[0].shape == (*shape, dims)
    assert mx.array_equal(got[0], want[0])
    assert got_grad.dtype == mx.float32
    # The same float32 sums, added in another order.
    assert mx.allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_the_wrapper_gives_autodiffs_rows_and_gradient(dtype: mx.Dtype) -> None:
    check_against_autodiff(make_embedding(plain_gather, plain_scatter), dtype)


def test_embed_tokens_is_the_lookup_in_the_compute_dtype() -> None:
    weight = mx.arange(12, dtype=mx.float32).reshape(4, 3) / 7
    tokens = mx.array([[3, 0], [1, 3]])
    rows = embed_tokens(weight, tokens, mx.bfloat16)
    assert rows.dtype == mx.bfloat16
    assert mx.array_equal(rows, weight[tokens].astype(mx.bfloat16))


def test_the_kernels_are_chosen_only_where_they_run() -> None:
    assert fused_embedding_available(mx.bfloat16, 128) == ON_A_CUDA_GPU
    assert not fused_embedding_available(mx.float16, 128)
    assert not fused_embedding_available(mx.float32, 100)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize(("shape", "vocab", "dims"), [((3, 50), 40, 16),
                                                     ((64, 512), 8000, 128)])
def test_the_cuda_kernels_give_autodiffs_rows_and_gradient(
        dtype: mx.Dtype, shape: tuple[int, int], vocab: int, dims: int) -> None:
    check_against_autodiff(make_embedding(cuda_gather, cuda_scatter), dtype, shape, vocab, dims)
