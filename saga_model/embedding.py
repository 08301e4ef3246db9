"""Token embeddings in the compute dtype, with CUDA kernels for both directions.

The model keeps its embedding table in float32 and computes in bfloat16. Autodiff of
``weight[tokens].astype(dtype)`` gathers float32 rows, casts them in a second pass, and in the
backward pass casts the bfloat16 gradient back to float32 before MLX's scatter adds it into
the table. Here one kernel gathers the float32 rows and writes them in the compute dtype,
and one adds the compute-dtype gradient straight into a float32 table, four adjacent columns
per reduction that returns nothing (``red.global.add.v4.f32``) on GPUs that have it (sm_90):
the step at batch 256 on an H100 is 3-4% faster with them (``benchmarks/train_breakdown.py``,
"embedding in MLX operations").

:func:`make_embedding` builds the differentiable lookup around any pair of functions with the
kernels' contracts, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_embedding.py``); :func:`embed_tokens` uses the kernels where
:func:`fused_embedding_available` (a CUDA GPU) and plain MLX operations elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import mlx.core as mx

from .cuda import cuda_kernel, grid_stride_launch, kernels_run_here

#: ``(weight (V, D) float32, tokens (...) int32, dtype) -> rows (..., D) in dtype``
Gather = Callable[[mx.array, mx.array, mx.Dtype], mx.array]
#: ``(cotangent (..., D), tokens (...) int32, vocabulary size) -> gradient (V, D) float32``
Scatter = Callable[[mx.array, mx.array, int], mx.array]

#: Each thread copies chunks of eight columns of a token's row; an id outside the table gives
#: a row of zeros.
_GATHER = """
  constexpr int CHUNKS = D / 8;
  const size_t chunks = (size_t)tokens_shape[0] * CHUNKS;
  const bool aligned = aligned16(rows);
  for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < chunks;
       c += (size_t)gridDim.x * blockDim.x) {
    const int token = tokens[c / CHUNKS];
    const int column = (c % CHUNKS) * 8;
    float v[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (token >= 0 && token < V) load8(weight + (size_t)token * D + column, v, false);
    store8(rows + c * 8, v, aligned);
  }
"""

#: Each thread adds four columns of one position's gradient into its token's row, a warp's
#: lanes adjacent columns (ids outside the table are skipped). ``d_weight`` starts at zero
#: (``init_value``).
_SCATTER = """
  constexpr int QUADS = D / 4;
  const size_t quads = (size_t)tokens_shape[0] * QUADS;
  for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < quads;
       c += (size_t)gridDim.x * blockDim.x) {
    const int token = tokens[c / QUADS];
    if (token < 0 || token >= V) continue;
    const T* in = cotangent + c * 4;
    float* out = d_weight + (size_t)token * D + (c % QUADS) * 4;
#if __CUDA_ARCH__ >= 900
    // A reduction that returns nothing (atomicAdd on a float4 compiles to an atom that
    // returns the old values).
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};"
                 :: "l"(out), "f"(static_cast<float>(in[0])), "f"(static_cast<float>(in[1])),
                    "f"(static_cast<float>(in[2])), "f"(static_cast<float>(in[3]))
                 : "memory");
#else
    #pragma unroll
    for (int i = 0; i < 4; ++i) atomicAdd(out + i, static_cast<float>(in[i]));
#endif
  }
"""


def fused_embedding_available(dtype: mx.Dtype, dims: int) -> bool:
    """Whether the embedding kernels run here: on a CUDA GPU, for a bfloat16 or float32
    compute dtype and rows of a multiple of 8 values."""
    return kernels_run_here(dtype) and dims % 8 == 0


def cuda_gather(weight: mx.array, tokens: mx.array, dtype: mx.Dtype) -> mx.array:
    """The rows of the float32 ``weight`` (V, D) for ``tokens``, in ``dtype``: one kernel."""
    vocab, dims = weight.shape
    flat = tokens.reshape(-1).astype(mx.int32)
    kernel = cuda_kernel("embedding_gather", ("weight", "tokens"), ("rows",), _GATHER)
    (rows,) = kernel(
        inputs=[weight, flat], template=[("V", vocab), ("D", dims)],
        **grid_stride_launch(flat.size * dims // 8), output_shapes=[(flat.size, dims)],
        output_dtypes=[dtype])
    return rows.reshape(*tokens.shape, dims)


def cuda_scatter(cotangent: mx.array, tokens: mx.array, vocab: int) -> mx.array:
    """The float32 (V, D) gradient of the table: each position's ``cotangent`` row added into
    its token's row (atomic additions, in any order): one kernel."""
    dims = cotangent.shape[-1]
    flat = tokens.reshape(-1).astype(mx.int32)
    kernel = cuda_kernel("embedding_scatter", ("cotangent", "tokens"), ("d_weight",), _SCATTER)
    (d_weight,) = kernel(
        inputs=[cotangent.reshape(-1, dims), flat],
        template=[("T", cotangent.dtype), ("V", vocab), ("D", dims)],
        **grid_stride_launch(flat.size * dims // 4), output_shapes=[(vocab, dims)],
        output_dtypes=[mx.float32], init_value=0)
    return d_weight


def make_embedding(gather: Gather, scatter: Scatter
                   ) -> Callable[[mx.array, mx.array, mx.Dtype], mx.array]:
    """``embedding(weight (V, D) float32, tokens, dtype) -> weight[tokens]`` in ``dtype``,
    differentiable in ``weight`` (a float32 gradient), from a ``gather`` and ``scatter`` with
    the kernels' contracts."""

    @functools.cache
    def lookup_in(dtype: mx.Dtype) -> Callable[[mx.array, mx.array], mx.array]:
        @mx.custom_function
        def lookup(weight: mx.array, tokens: mx.array) -> mx.array:
            return gather(weight, tokens, dtype)

        @lookup.vjp
        def lookup_vjp(primals: tuple[mx.array, mx.array], cotangent: mx.array,
                       _output: mx.array) -> tuple[mx.array, mx.array]:
            weight, tokens = primals
            return scatter(cotangent, tokens, weight.shape[0]), mx.zeros_like(tokens)

        return lookup

    def embedding(weight: mx.array, tokens: mx.array, dtype: mx.Dtype) -> mx.array:
        return lookup_in(dtype)(weight, tokens)

    return embedding


#: The lookup with the CUDA kernels.
fused_embedding = make_embedding(cuda_gather, cuda_scatter)


def embed_tokens(weight: mx.array, tokens: mx.array, dtype: mx.Dtype) -> mx.array:
    """``weight[tokens]`` in ``dtype`` (the CUDA kernels on a CUDA GPU, MLX operations
    elsewhere)."""
    if fused_embedding_available(dtype, weight.shape[-1]):
        return fused_embedding(weight, tokens, dtype)
    return weight[tokens].astype(dtype)
