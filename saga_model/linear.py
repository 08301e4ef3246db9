"""The linear layers' product, whose weight gradient is a batch of products on a CUDA GPU.

A linear layer ``y = x W^T`` over all B * L positions has a weight gradient ``dY^T X``: a small
(out x in) matrix summed over 131,072 rows at batch 256. For autodiff's product cuBLAS picks
split-K kernels with 64 x 64 tiles and a reduction kernel: 1.77 ms for the model's twelve
layers, about 73 TFLOP/s, the largest share of an H100's 9.5 ms step
(``benchmarks/train_breakdown.py --profile``). Asked instead for one product per chunk of
rows, ``dY_c^T X_c`` as a batch, and then for the sum of the chunks' products in float32,
cuBLAS runs its large tiles, many to a chunk. The sum reads a few megabytes.

:func:`make_linear` builds the differentiable product for any chunk size, so it is tested on
the CPU against autodiff with small chunks (``tests/test_linear.py``); the model uses
:data:`chunked_linear` where :func:`chunked_linear_available` (a CUDA GPU, rows a multiple of
:data:`CHUNK_ROWS`) and ``x @ W^T`` with autodiff elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from .cuda import kernels_run_here

#: Rows of one product of the weight gradient's batch.
CHUNK_ROWS = 2048


def make_linear(chunk_rows: int) -> Callable[[mx.array, mx.array], mx.array]:
    """``linear(x (..., in), weight (out, in)) -> x W^T`` in ``x``'s dtype (the float32
    weight cast to it), whose weight gradient is summed over chunks of ``chunk_rows`` rows of
    ``x`` (their number must divide by it): one batched product, then a float32 sum."""

    @mx.custom_function
    def linear(x: mx.array, weight: mx.array) -> mx.array:
        return x @ weight.astype(x.dtype).T

    @linear.vjp
    def linear_vjp(primals: tuple[mx.array, mx.array], d_out: mx.array, _output: mx.array
                   ) -> tuple[mx.array, mx.array]:
        x, weight = primals
        d_x = d_out @ weight.astype(x.dtype)
        chunks = x.size // x.shape[-1] // chunk_rows
        xs = x.reshape(chunks, chunk_rows, x.shape[-1])
        d_outs = d_out.reshape(chunks, chunk_rows, d_out.shape[-1])
        d_weight = (d_outs.swapaxes(1, 2) @ xs).astype(mx.float32).sum(axis=0)
        return d_x, d_weight.astype(weight.dtype)

    return linear


def chunked_linear_available(x: mx.array) -> bool:
    """Whether :data:`chunked_linear` runs for ``x``: on a CUDA GPU (where the project's CUDA
    paths are enabled), for rows that make at least two chunks of :data:`CHUNK_ROWS`."""
    rows = x.size // x.shape[-1]
    return kernels_run_here(x.dtype) and rows % CHUNK_ROWS == 0 and rows >= 2 * CHUNK_ROWS


#: The linear product with the chunked weight gradient.
chunked_linear = make_linear(CHUNK_ROWS)
