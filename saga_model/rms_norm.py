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

The model's norms read its residual stream just after a branch's output is added to it, and
the stream's gradient there is the sum of the norm's and the later layers': MLX's twelve
additions of these (six each way) took 0.39 ms a step at batch 256. Compiled with
``RESIDUAL`` 1, the forward kernel adds the branch to the stream (rounded as MLX's addition
rounds it) and writes the sum as well as its norm, and the backward kernel adds the stream's
gradient to the one it forms, so the additions cost no pass of their own.

:func:`make_rms_norm` builds the differentiable norm around any pair of functions with the
kernels' contracts, and :func:`make_residual_norms` the residual stream's norms around the
kernels with and without the stream, so the wrappers are tested on the CPU with plain MLX
operations (``tests/test_rms_norm.py``); the model uses :data:`fused_rms_norm` and
:data:`fused_residual_norms` where :func:`fused_rms_norm_available` and
:func:`fused_residual_norms_available` (a CUDA GPU), ``mx.fast.rms_norm`` after MLX's
additions elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx

from .cuda import block_count, cuda_kernel, kernels_run_here, launch

#: ``(x (N, D), weight (D,) in x's dtype, eps (1,)) -> (y (N, D), reciprocal RMS (N,))``
Forward = Callable[[mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]
#: ``(x, weight, reciprocal RMS, cotangent) -> (dx (N, D), d_weight (D,) float32)``
Backward = Callable[[mx.array, mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]
#: ``(x (N, D), branch (N, D), weight, eps) -> (y, reciprocal RMS, x + branch)``: Forward of
#: the sum, rounded to x's dtype as MLX adds them.
AddForward = Callable[[mx.array, mx.array, mx.array, mx.array],
                      tuple[mx.array, mx.array, mx.array]]
#: ``(x, weight, reciprocal RMS, cotangent, stream cotangent) -> (dx, d_weight)``: Backward
#: with the stream cotangent (N, D) added to dx (in float32, one rounding).
AddBackward = Callable[[mx.array, mx.array, mx.array, mx.array, mx.array],
                       tuple[mx.array, mx.array]]

_THREADS = 256
_WARPS = _THREADS // 32
#: At most this many blocks: each warp then takes several rows, and the backward pass makes
#: fewer atomic additions.
_MAX_BLOCKS = 1024

#: With ``RESIDUAL`` 1 (see :func:`_residual_flag`) the row is the residual stream ``x`` plus
#: ``branch``, added in T as MLX adds them and written to ``stream``.
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
      const size_t at = row * D + lane + 32 * i;
#if RESIDUAL
      const T added = x[at] + branch[at];  // in T, rounded as MLX's addition rounds it
      stream[at] = added;
      v[i] = static_cast<float>(added);
#else
      v[i] = static_cast<float>(x[at]);
#endif
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

#: With ``RESIDUAL`` 1, ``dx`` is also the residual stream's gradient: ``stream_cotangent``
#: (from the layers after) plus the norm's, added in float32 and rounded once.
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
    float normed[PER_LANE], scaled_grad[PER_LANE], passed[PER_LANE];
    float dot = 0.0f;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      const size_t at = row * D + lane + 32 * i;
      const float g = static_cast<float>(cotangent[at]);
      normed[i] = static_cast<float>(x[at]) * scale;
      scaled_grad[i] = g * gain[i];
      dot += scaled_grad[i] * normed[i];
      sums[i] += g * normed[i];
#if RESIDUAL
      passed[i] = static_cast<float>(stream_cotangent[at]);
#endif
    }
    dot = warp_sum(dot) / D;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
      float grad = scale * (scaled_grad[i] - normed[i] * dot);
#if RESIDUAL
      grad += passed[i];
#endif
      dx[row * D + lane + 32 * i] = static_cast<T>(grad);
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


def fused_residual_norms_available(dtype: mx.Dtype, dims: int) -> bool:
    """Whether :data:`fused_residual_norms` runs here: wherever :data:`fused_rms_norm` does
    (their kernels are the same); a switch of its own, to time the residual additions apart."""
    return fused_rms_norm_available(dtype, dims)


def _blocks(rows: int) -> int:
    return block_count(rows * 32, _THREADS, _MAX_BLOCKS)


def _residual_flag(residual: bool) -> str:
    """The header that compiles a kernel with (1) or without (0) its residual stream."""
    return f"#define RESIDUAL {int(residual)}\n"


def cuda_forward(x: mx.array, weight: mx.array, eps: mx.array) -> tuple[mx.array, mx.array]:
    """The norm of each row of ``x`` (N, D) times ``weight`` (D,), and each row's reciprocal
    RMS (float32): one CUDA kernel."""
    y, rstd = _forward([x, weight, eps])
    return y, rstd


def cuda_add_forward(x: mx.array, branch: mx.array, weight: mx.array, eps: mx.array
                     ) -> tuple[mx.array, mx.array, mx.array]:
    """:func:`cuda_forward` of ``x + branch`` (both (N, D), in one dtype), and that sum as
    MLX adds them: one CUDA kernel."""
    y, rstd, stream = _forward([x, branch, weight, eps])
    return y, rstd, stream


def _forward(inputs: list[mx.array]) -> list[mx.array]:
    """The forward kernel on ``[x, weight, eps]``, or ``[x, branch, weight, eps]`` (then it
    adds them first and writes their sum too)."""
    x, residual = inputs[0], len(inputs) == 4
    rows, dims = x.shape
    kernel = cuda_kernel("add_rms_norm_forward" if residual else "rms_norm_forward",
                         ("x", "branch", "weight", "eps") if residual else ("x", "weight", "eps"),
                         ("y", "rstd", "stream") if residual else ("y", "rstd"),
                         _FORWARD, _residual_flag(residual))
    shapes, dtypes = [x.shape, (rows,), x.shape], [x.dtype, mx.float32, x.dtype]
    return kernel(
        inputs=inputs, template=[("T", x.dtype), ("D", dims)], **launch(_blocks(rows), _THREADS),
        output_shapes=shapes[: 2 + residual], output_dtypes=dtypes[: 2 + residual])


def cuda_backward(x: mx.array, weight: mx.array, rstd: mx.array, cotangent: mx.array
                  ) -> tuple[mx.array, mx.array]:
    """The gradients of the norm for the input (x's dtype) and the gain (float32): one CUDA
    kernel, and one for the gain's column sums."""
    return _backward([x, weight, rstd, cotangent])


def cuda_add_backward(x: mx.array, weight: mx.array, rstd: mx.array, cotangent: mx.array,
                      stream_cotangent: mx.array) -> tuple[mx.array, mx.array]:
    """:func:`cuda_backward` with ``stream_cotangent`` (x's gradient from elsewhere: the
    residual stream's, from the layers after) added to the input's gradient in the same pass,
    in float32 before it is rounded to x's dtype."""
    return _backward([x, weight, rstd, cotangent, stream_cotangent])


def _backward(inputs: list[mx.array]) -> tuple[mx.array, mx.array]:
    """The backward kernels on ``[x, weight, rstd, cotangent]``, or with the stream's
    cotangent after them (added to the input's gradient)."""
    x, residual = inputs[0], len(inputs) == 5
    rows, dims = x.shape
    blocks = _blocks(rows)
    names = ("x", "weight", "rstd", "cotangent", "stream_cotangent")
    kernel = cuda_kernel("add_rms_norm_backward" if residual else "rms_norm_backward",
                         names[: len(inputs)], ("dx", "block_sums"), _BACKWARD,
                         _residual_flag(residual))
    dx, block_sums = kernel(
        inputs=inputs, template=[("T", x.dtype), ("D", dims), ("THREADS", _THREADS)],
        **launch(blocks, _THREADS),
        output_shapes=[x.shape, (blocks, dims)], output_dtypes=[x.dtype, mx.float32])
    column_sums = cuda_kernel("rms_norm_column_sums", ("block_sums",), ("d_weight",),
                              _COLUMN_SUMS)
    (d_weight,) = column_sums(
        inputs=[block_sums], template=[("D", dims), ("THREADS", _THREADS)],
        **launch(dims // 32, _THREADS), output_shapes=[(dims,)], output_dtypes=[mx.float32])
    return dx, d_weight


def _rows(x: mx.array) -> mx.array:
    return x.reshape(-1, x.shape[-1])


def _eps(eps: float) -> mx.array:
    return mx.array([eps], mx.float32)


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
        return normed(_rows(x), weight, _eps(eps))[0].reshape(x.shape)

    return rms_norm


class ResidualNorms(NamedTuple):
    """The norms of a pre-norm model's residual stream ``x`` (..., D), each taking the addition
    before it: ``start(x, weight, eps)`` gives ``(x, norm(x))`` (the stream the layers after
    must read in place of ``x``), ``add(x, branch, weight, eps)`` gives ``(x + branch,
    norm(x + branch))``, and ``end(x, branch, weight, eps)`` only ``norm(x + branch)``, where
    the stream ends. Their backward passes add the stream's gradient from the layers after to
    the norm's (``end``: none), so that no separate additions are left either way."""

    start: Callable[[mx.array, mx.array, float], tuple[mx.array, mx.array]]
    add: Callable[[mx.array, mx.array, mx.array, float], tuple[mx.array, mx.array]]
    end: Callable[[mx.array, mx.array, mx.array, float], mx.array]


def make_residual_norms(forward: Forward, add_forward: AddForward, backward: Backward,
                        add_backward: AddBackward) -> ResidualNorms:
    """:class:`ResidualNorms` (values and gradients as :func:`make_rms_norm`'s norm after
    MLX's additions, ``branch`` in x's dtype) from functions with the kernels' contracts."""

    @mx.custom_function
    def started(x: mx.array, weight: mx.array, eps: mx.array
                ) -> tuple[mx.array, mx.array, mx.array]:
        return x, *forward(x, weight.astype(x.dtype), eps)

    @started.vjp
    def started_vjp(primals: tuple[mx.array, mx.array, mx.array],
                    cotangents: tuple[mx.array, mx.array, mx.array],
                    outputs: tuple[mx.array, mx.array, mx.array]
                    ) -> tuple[mx.array, mx.array, mx.array]:
        x, weight, eps = primals
        dx, d_weight = add_backward(x, weight.astype(x.dtype), outputs[2], cotangents[1],
                                    cotangents[0])
        return dx, d_weight.astype(weight.dtype), mx.zeros_like(eps)

    def add_then_norm(x: mx.array, branch: mx.array, weight: mx.array, eps: mx.array
                      ) -> tuple[mx.array, mx.array, mx.array]:
        y, rstd, stream = add_forward(x, branch, weight.astype(x.dtype), eps)
        return stream, y, rstd

    added, ended = mx.custom_function(add_then_norm), mx.custom_function(add_then_norm)

    def vjp_of(stream_has_gradient: bool) -> Callable[..., tuple[mx.array, ...]]:
        """The backward pass of ``added`` (the stream's own gradient added in the kernel) or
        of ``ended`` (nothing reads its stream)."""

        def vjp(primals: tuple[mx.array, mx.array, mx.array, mx.array],
                cotangents: tuple[mx.array, mx.array, mx.array],
                outputs: tuple[mx.array, mx.array, mx.array]
                ) -> tuple[mx.array, mx.array, mx.array, mx.array]:
            stream, _, rstd = outputs
            weight, eps = primals[2:]
            gain = weight.astype(stream.dtype)
            if stream_has_gradient:
                d_stream, d_weight = add_backward(stream, gain, rstd, cotangents[1],
                                                  cotangents[0])
            else:
                d_stream, d_weight = backward(stream, gain, rstd, cotangents[1])
            return d_stream, d_stream, d_weight.astype(weight.dtype), mx.zeros_like(eps)

        return vjp

    added.vjp(vjp_of(True))
    ended.vjp(vjp_of(False))

    def start(x: mx.array, weight: mx.array, eps: float) -> tuple[mx.array, mx.array]:
        stream, y, _ = started(_rows(x), weight, _eps(eps))
        return stream.reshape(x.shape), y.reshape(x.shape)

    def add(x: mx.array, branch: mx.array, weight: mx.array, eps: float
            ) -> tuple[mx.array, mx.array]:
        stream, y, _ = added(_rows(x), _rows(branch), weight, _eps(eps))
        return stream.reshape(x.shape), y.reshape(x.shape)

    def end(x: mx.array, branch: mx.array, weight: mx.array, eps: float) -> mx.array:
        return ended(_rows(x), _rows(branch), weight, _eps(eps))[1].reshape(x.shape)

    return ResidualNorms(start, add, end)


#: RMS normalisation with the CUDA kernels.
fused_rms_norm = make_rms_norm(cuda_forward, cuda_backward)

#: The residual stream's norms with the CUDA kernels.
fused_residual_norms = make_residual_norms(cuda_forward, cuda_add_forward, cuda_backward,
                                           cuda_add_backward)
