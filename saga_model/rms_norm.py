"""RMS normalisation for training on a CUDA GPU: two kernels, one pass each way.

``mx.fast.rms_norm`` on MLX 0.32's CUDA backend normalises rows of 128 values at well under
the GPU's memory bandwidth, and its backward pass reduces the gain's gradient in a separate
column reduction: the seven norms of the seed model took 1.5 ms of a 13.3 ms step at batch
256 (``benchmarks/train_breakdown.py --profile``). Here one warp normalises a row (its values
stay in registers) and keeps the row's reciprocal RMS; the backward kernel forms the input's
gradient from it in the same pass that sums the gain's gradient over the block's rows; a
small kernel adds up the blocks' sums (MLX's column reduction of them took 0.3 ms a step, and
atomic additions into one total need outputs zero-filled first: 0.24 ms, most of it the
input's gradient).

:func:`make_rms_norm` builds the differentiable norm around any pair of functions with the
kernels' contracts, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_rms_norm.py``); the model uses :data:`fused_rms_norm` where
:func:`fused_rms_norm_available` (a CUDA GPU) and ``mx.fast.rms_norm`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from .cuda import block_count, cuda_kernel, kernels_run_here, launch

#: ``(x (N, D), weight (D,) in x's dtype, eps (1,)) -> (y (N, D), reciprocal RMS (N,))``
Forward = Callable[[mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]
#: ``(x, weight, reciprocal RMS, cotangent) -> (dx (N, D), d_weight (D,) float32)``
Backward = Callable[[mx.array, mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]

_THREADS = 256
_WARPS = _THREADS // 32
#: At most this many blocks: each warp then takes several rows, and the backward pass makes
#: fewer atomic additions.
_MAX_BLOCKS = 1024

_FORWARD = """
  constexpr int PER_LANE = D / 32;
  const int lane = threadIdx.x % 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  const size_t rows = x_shape[0];
  float gain[PER_LANE];
  #pragma unroll
  for (int i = 0; i < PER_LANE; ++i) gain[i] = static_cast<float>(weight[lane + 32 * i]);
  for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < rows;
       row += warps) {
    float v[PER_LANE];
    float squares = 0.0f;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      v[i] = static_cast<float>(x[row * D + lane + 32 * i]);
      squares += v[i] * v[i];
    }
    const float scale = rsqrtf(warp_sum(squares) / D + eps[0]);
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      y[row * D + lane + 32 * i] = static_cast<T>(v[i] * scale * gain[i]);
    }
    if (lane == 0) rstd[row] = scale;
  }
"""

_BACKWARD = """
  constexpr int PER_LANE = D / 32;
  constexpr int WARPS = THREADS / 32;
  __shared__ float partial[WARPS * D];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  const size_t rows = x_shape[0];
  float gain[PER_LANE], sums[PER_LANE];
  #pragma unroll
  for (int i = 0; i < PER_LANE; ++i) {
    gain[i] = static_cast<float>(weight[lane + 32 * i]);
    sums[i] = 0.0f;
  }
  for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < rows;
       row += warps) {
    const float scale = rstd[row];
    float normed[PER_LANE], scaled_grad[PER_LANE];
    float dot = 0.0f;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      const size_t at = row * D + lane + 32 * i;
      const float g = static_cast<float>(cotangent[at]);
      normed[i] = static_cast<float>(x[at]) * scale;
      scaled_grad[i] = g * gain[i];
      dot += scaled_grad[i] * normed[i];
      sums[i] += g * normed[i];
    }
    dot = warp_sum(dot) / D;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      dx[row * D + lane + 32 * i] = static_cast<T>(scale * (scaled_grad[i] - normed[i] * dot));
    }
  }
  #pragma unroll
  for (int i = 0; i < PER_LANE; ++i) partial[warp * D + lane + 32 * i] = sums[i];
  __syncthreads();
  for (int column = threadIdx.x; column < D; column += THREADS) {
    float total = 0.0f;
    #pragma unroll
    for (int w = 0; w < WARPS; ++w) total += partial[w * D + column];
    block_sums[blockIdx.x * D + column] = total;
  }
"""

#: The gain's gradient: the column sums of the backward kernel's (blocks, D) block sums, each
#: warp's lanes reading 32 adjacent columns of a row.
_COLUMN_SUMS = """
  constexpr int WARPS = THREADS / 32;
  __shared__ float partial[WARPS][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int column = blockIdx.x * 32 + lane;
  const int rows = block_sums_shape[0];
  float total = 0.0f;
  for (int row = warp; row < rows; row += WARPS) total += block_sums[row * D + column];
  partial[warp][lane] = total;
  __syncthreads();
  if (warp == 0) {
    #pragma unroll
    for (int w = 1; w < WARPS; ++w) total += partial[w][lane];
    d_weight[column] = total;
  }
"""

def fused_rms_norm_available(dtype: mx.Dtype, dims: int) -> bool:
    """Whether :data:`fused_rms_norm` runs here: on a CUDA GPU, for bfloat16 or float32 rows
    of a multiple of 32 values, at most 1,024 (each of a warp's 32 lanes keeps its share)."""
    return kernels_run_here(dtype) and dims % 32 == 0 and dims <= 1024


def _blocks(rows: int) -> int:
    return block_count(rows * 32, _THREADS, _MAX_BLOCKS)


def cuda_forward(x: mx.array, weight: mx.array, eps: mx.array) -> tuple[mx.array, mx.array]:
    """The norm of each row of ``x`` (N, D) times ``weight`` (D,), and each row's reciprocal
    RMS (float32): one CUDA kernel."""
    rows, dims = x.shape
    kernel = cuda_kernel("rms_norm_forward", ("x", "weight", "eps"), ("y", "rstd"), _FORWARD)
    return kernel(
        inputs=[x, weight, eps], template=[("T", x.dtype), ("D", dims)],
        **launch(_blocks(rows), _THREADS),
        output_shapes=[x.shape, (rows,)], output_dtypes=[x.dtype, mx.float32])


def cuda_backward(x: mx.array, weight: mx.array, rstd: mx.array, cotangent: mx.array
                  ) -> tuple[mx.array, mx.array]:
    """The gradients of the norm for the input (x's dtype) and the gain (float32): one CUDA
    kernel."""
    rows, dims = x.shape
    blocks = _blocks(rows)
    kernel = cuda_kernel("rms_norm_backward", ("x", "weight", "rstd", "cotangent"),
                         ("dx", "block_sums"), _BACKWARD)
    dx, block_sums = kernel(
        inputs=[x, weight, rstd, cotangent],
        template=[("T", x.dtype), ("D", dims), ("THREADS", _THREADS)],
        **launch(blocks, _THREADS),
        output_shapes=[x.shape, (blocks, dims)], output_dtypes=[x.dtype, mx.float32])
    column_sums = cuda_kernel("rms_norm_column_sums", ("block_sums",), ("d_weight",),
                              _COLUMN_SUMS)
    (d_weight,) = column_sums(
        inputs=[block_sums], template=[("D", dims), ("THREADS", _THREADS)],
        **launch(dims // 32, _THREADS), output_shapes=[(dims,)], output_dtypes=[mx.float32])
    return dx, d_weight


def make_rms_norm(forward: Forward, backward: Backward
                  ) -> Callable[[mx.array, mx.array, float], mx.array]:
    """``rms_norm(x (..., D), weight (D,) float32, eps)`` as ``mx.fast.rms_norm`` computes it
    with the weight cast to x's dtype, differentiable in ``x`` and ``weight`` (a float32
    gradient), from a ``forward`` and ``backward`` with the kernels' contracts."""

    @mx.custom_function
    def normed(x: mx.array, weight: mx.array, eps: mx.array) -> tuple[mx.array, mx.array]:
        return forward(x, weight.astype(x.dtype), eps)

    @normed.vjp
    def normed_vjp(primals: tuple[mx.array, mx.array, mx.array],
                   cotangents: tuple[mx.array, mx.array], outputs: tuple[mx.array, mx.array]
                   ) -> tuple[mx.array, mx.array, mx.array]:
        x, weight, eps = primals
        dx, d_weight = backward(x, weight.astype(x.dtype), outputs[1], cotangents[0])
        return dx, d_weight.astype(weight.dtype), mx.zeros_like(eps)

    def rms_norm(x: mx.array, weight: mx.array, eps: float) -> mx.array:
        rows = x.reshape(-1, x.shape[-1])
        return normed(rows, weight, mx.array([eps], mx.float32))[0].reshape(x.shape)

    return rms_norm


#: RMS normalisation with the CUDA kernels.
fused_rms_norm = make_rms_norm(cuda_forward, cuda_backward)
