"""The MLP's GELU (tanh approximation), with its derivative written out, and CUDA kernels for it.

``nn.gelu_approx`` takes ``x**3`` through a power function and autodiff differentiates that
and ``tanh`` through ``cosh``. Here the cube is two products and the derivative needs one
``tanh``; values and derivative are computed in float32 whatever the compute dtype and
rounded once. On a CUDA GPU, MLX's compiled element-wise kernels for these still took 1.7 ms
a step at batch 256 on an H100 (``benchmarks/train_breakdown.py --profile``, "GELU in MLX
operations": float32 intermediates of the (positions x 384) activations), so there one
kernel computes the values and one the gradient, each a single pass over its inputs with
eight values a thread (0.22 and 0.34 ms for the three layers); :data:`ops_gelu` is the
portable path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx

from .cuda import cuda_kernel, grid_stride_launch, kernels_run_here

_SCALE = math.sqrt(2 / math.pi)
_CUBIC = 0.044715

_HEADER = f"""
__device__ inline float gelu_value(float x) {{
  return 0.5f * x * (1.0f + tanhf({_SCALE!r}f * (x + {_CUBIC!r}f * x * x * x)));
}}

__device__ inline float gelu_slope(float x) {{
  const float square = x * x;
  const float t = tanhf({_SCALE!r}f * (x + {_CUBIC!r}f * square * x));
  return 0.5f * (1.0f + t)
         + 0.5f * x * (1.0f - t * t) * ({_SCALE!r}f * (1.0f + 3.0f * {_CUBIC!r}f * square));
}}
"""

#: Eight values a thread (one 16-byte access each way for bfloat16), then the last ``n % 8``.
_FORWARD = """
  const size_t n = x_shape[0], chunks = n / 8;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  const bool aligned = aligned16(x) && aligned16(y);
  for (size_t c = first; c < chunks; c += stride) {
    float v[8];
    load8(x + 8 * c, v, aligned);
    #pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = gelu_value(v[i]);
    store8(y + 8 * c, v, aligned);
  }
  for (size_t i = 8 * chunks + first; i < n; i += stride) {
    y[i] = static_cast<T>(gelu_value(static_cast<float>(x[i])));
  }
"""

_BACKWARD = """
  const size_t n = x_shape[0], chunks = n / 8;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  const bool aligned = aligned16(x) && aligned16(cotangent) && aligned16(dx);
  for (size_t c = first; c < chunks; c += stride) {
    float v[8], g[8];
    load8(x + 8 * c, v, aligned);
    load8(cotangent + 8 * c, g, aligned);
    #pragma unroll
    for (int i = 0; i < 8; ++i) g[i] *= gelu_slope(v[i]);
    store8(dx + 8 * c, g, aligned);
  }
  for (size_t i = 8 * chunks + first; i < n; i += stride) {
    const float slope = gelu_slope(static_cast<float>(x[i]));
    dx[i] = static_cast<T>(static_cast<float>(cotangent[i]) * slope);
  }
"""


def _ops_forward(x: mx.array) -> mx.array:
    wide = x.astype(mx.float32)
    return (0.5 * wide * (1 + mx.tanh(_SCALE * (wide + _CUBIC * (wide * wide * wide))))
            ).astype(x.dtype)


def _ops_backward(x: mx.array, cotangent: mx.array) -> mx.array:
    wide = x.astype(mx.float32)
    square = wide * wide
    tanh = mx.tanh(_SCALE * (wide + _CUBIC * square * wide))
    slope = 0.5 * (1 + tanh) + 0.5 * wide * (1 - tanh * tanh) * (
        _SCALE * (1 + 3 * _CUBIC * square))
    return (cotangent * slope).astype(cotangent.dtype)


def _cuda_forward(x: mx.array) -> mx.array:
    flat = x.reshape(-1)
    kernel = cuda_kernel("gelu_forward", ("x",), ("y",), _FORWARD, _HEADER)
    (y,) = kernel(
        inputs=[flat], template=[("T", x.dtype)], **grid_stride_launch(-(-flat.size // 8)),
        output_shapes=[flat.shape], output_dtypes=[x.dtype])
    return y.reshape(x.shape)


def _cuda_backward(x: mx.array, cotangent: mx.array) -> mx.array:
    flat = x.reshape(-1)
    kernel = cuda_kernel("gelu_backward", ("x", "cotangent"), ("dx",), _BACKWARD, _HEADER)
    (dx,) = kernel(
        inputs=[flat, cotangent.astype(x.dtype).reshape(-1)], template=[("T", x.dtype)],
        **grid_stride_launch(-(-flat.size // 8)), output_shapes=[flat.shape],
        output_dtypes=[x.dtype])
    return dx.reshape(x.shape)


def make_gelu(forward: Callable[[mx.array], mx.array],
              backward: Callable[[mx.array, mx.array], mx.array]
              ) -> Callable[[mx.array], mx.array]:
    """GELU from ``forward(x)`` and ``backward(x, cotangent) -> dx`` (both in x's dtype)."""

    @mx.custom_function
    def gelu(x: mx.array) -> mx.array:
        return forward(x)

    @gelu.vjp
    def gelu_vjp(x: mx.array, cotangent: mx.array, _output: mx.array) -> mx.array:
        return backward(x, cotangent)

    return gelu


#: GELU in MLX operations (CPU, Metal) and with the CUDA kernels.
ops_gelu = make_gelu(_ops_forward, _ops_backward)
cuda_gelu = make_gelu(_cuda_forward, _cuda_backward)


def gelu_approx(x: mx.array) -> mx.array:
    """``nn.gelu_approx``'s formula computed in float32 and rounded once to x's dtype, with
    its derivative written out (the CUDA kernels on a CUDA GPU, MLX operations elsewhere)."""
    return cuda_gelu(x) if kernels_run_here(x.dtype) else ops_gelu(x)
