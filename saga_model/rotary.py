"""The attention's heads from its fused projection: split, rotated (RoPE), in one pass each way.

The model projects each position to queries, keys and values at once (``(B, L, 3 * H * D)``).
In MLX operations the heads are a split and two transposes, then ``mx.fast.rope`` for the
queries and the keys; the backward pass rotates both gradients back and copies the three into
one array for the projection. On a CUDA GPU that is two rope kernels and strided copies each
way per layer (the twelve rope kernels alone took 0.93 ms a step at batch 256 on an H100,
``benchmarks/train_breakdown.py --profile``). Here one kernel reads the projection once and
writes the rotated queries and keys and the values, each ``(B, H, L, D)``; one kernel takes
the three gradients back to the projection's layout, rotating two of them back (0.24 and
0.23 ms for the three layers).

The rotation is ``mx.fast.rope``'s non-traditional one at offset 0 (training and scoring, not
decoding with a cache): dimension ``i < D/2`` pairs with ``i + D/2`` and turns by
``position * base ** (-i / (D/2))``, in float32. :func:`make_heads` builds the differentiable
split around any pair of functions with the kernels' contracts, so the wrapper is tested on
the CPU with plain MLX operations (``tests/test_rotary.py``); the model uses :data:`fused_heads`
where :func:`fused_heads_available` (a CUDA GPU) and :func:`ops_heads` elsewhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mlx.core as mx

from .cuda import cuda_kernel, grid_stride_launch, kernels_run_here

Heads = tuple[mx.array, mx.array, mx.array]
#: ``(projection (B, L, 3*H*D), heads H, log2 of the base (1,)) -> (q, k, v) (B, H, L, D)``
Forward = Callable[[mx.array, int, mx.array], Heads]
#: ``(dq, dk, dv (B, H, L, D), log2 of the base (1,)) -> d_projection (B, L, 3*H*D)``
Backward = Callable[[mx.array, mx.array, mx.array, mx.array], mx.array]

#: The turn of eight pairs ``first .. first + 7`` at ``position``.
_HEADER = """
template <int HALF>
__device__ inline void turns(int position, int first, float log2_base, float* c, float* s) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float inv_freq = exp2f(-(static_cast<float>(first + i) / HALF) * log2_base);
    const float theta = static_cast<float>(position) * inv_freq;
    c[i] = cosf(theta);
    s[i] = sinf(theta);
  }
}
"""

#: The grid-stride loop of both kernels over items (position, head, eight pairs from
#: ``first``) and where each reads or writes in the heads' layout (``at``), with its turns.
_EACH_ITEM = """  for (size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x; item < items;
       item += (size_t)gridDim.x * blockDim.x) {
    const int first = (item % OCTETS) * 8;
    const int head = (item / OCTETS) % H;
    const size_t row = item / (OCTETS * H);
    const int position = row % length;
    const size_t batch = row / length;
"""
_TURNS = """    const size_t at = ((batch * H + head) * length + position) * D + first;
    float c[8], s[8];
    turns<HALF>(position, first, log2_base, c, s);
"""

#: One thread per (position, head, eight pairs): the pairs' halves of q and k turned, v copied.
_FORWARD = """
  constexpr int HALF = D / 2, OCTETS = HALF / 8, WIDTH = H * D;
  const int length = projection_shape[1];
  const size_t items = (size_t)projection_shape[0] * length * H * OCTETS;
  const float log2_base = log2_base_in[0];
  const bool aligned = aligned16(projection) && aligned16(q) && aligned16(k) && aligned16(v);
""" + _EACH_ITEM + """    const T* in = projection + row * 3 * WIDTH + head * D + first;
""" + _TURNS + """    #pragma unroll
    for (int part = 0; part < 2; ++part) {
      float x1[8], x2[8], y1[8], y2[8];
      load8(in + part * WIDTH, x1, aligned);
      load8(in + part * WIDTH + HALF, x2, aligned);
      #pragma unroll
      for (int i = 0; i < 8; ++i) {
        y1[i] = x1[i] * c[i] - x2[i] * s[i];
        y2[i] = x1[i] * s[i] + x2[i] * c[i];
      }
      T* out = part == 0 ? q : k;
      store8(out + at, y1, aligned);
      store8(out + at + HALF, y2, aligned);
    }
    float x[8];
    load8(in + 2 * WIDTH, x, aligned);
    store8(v + at, x, aligned);
    load8(in + 2 * WIDTH + HALF, x, aligned);
    store8(v + at + HALF, x, aligned);
  }
"""

#: The transpose: the gradients of q and k turned back, that of v copied.
_BACKWARD = """
  constexpr int HALF = D / 2, OCTETS = HALF / 8, WIDTH = H * D;
  const size_t batches = dq_shape[0];
  const int length = dq_shape[2];
  const size_t items = batches * length * H * OCTETS;
  const float log2_base = log2_base_in[0];
  const bool aligned = aligned16(dq) && aligned16(dk) && aligned16(dv)
                       && aligned16(d_projection);
""" + _EACH_ITEM + """    T* out = d_projection + row * 3 * WIDTH + head * D + first;
""" + _TURNS + """    #pragma unroll
    for (int part = 0; part < 2; ++part) {
      float g1[8], g2[8], x1[8], x2[8];
      const T* grad = part == 0 ? dq : dk;
      load8(grad + at, g1, aligned);
      load8(grad + at + HALF, g2, aligned);
      #pragma unroll
      for (int i = 0; i < 8; ++i) {
        x1[i] = g1[i] * c[i] + g2[i] * s[i];
        x2[i] = g2[i] * c[i] - g1[i] * s[i];
      }
      store8(out + part * WIDTH, x1, aligned);
      store8(out + part * WIDTH + HALF, x2, aligned);
    }
    float g[8];
    load8(dv + at, g, aligned);
    store8(out + 2 * WIDTH, g, aligned);
    load8(dv + at + HALF, g, aligned);
    store8(out + 2 * WIDTH + HALF, g, aligned);
  }
"""


def fused_heads_available(dtype: mx.Dtype, head_dim: int) -> bool:
    """Whether :data:`fused_heads` runs here: on a CUDA GPU, for bfloat16 or float32 and heads
    of a multiple of 16 dimensions (each thread turns eight pairs)."""
    return kernels_run_here(dtype) and head_dim % 16 == 0


def cuda_forward(projection: mx.array, heads: int, log2_base: mx.array) -> Heads:
    """Rotated queries and keys and the values, each (B, H, L, D), from the projection
    (B, L, 3 * H * D): one CUDA kernel."""
    batch, length, width = projection.shape
    head_dim = width // (3 * heads)
    shape = (batch, heads, length, head_dim)
    kernel = cuda_kernel("rotary_forward", ("projection", "log2_base_in"), ("q", "k", "v"),
                         _FORWARD, _HEADER)
    q, k, v = kernel(
        inputs=[projection, log2_base],
        template=[("T", projection.dtype), ("H", heads), ("D", head_dim)],
        **grid_stride_launch(batch * length * heads * (head_dim // 16)),
        output_shapes=[shape] * 3, output_dtypes=[projection.dtype] * 3)
    return q, k, v


def cuda_backward(dq: mx.array, dk: mx.array, dv: mx.array, log2_base: mx.array) -> mx.array:
    """The projection's gradient (B, L, 3 * H * D) from those of the three outputs: one CUDA
    kernel."""
    batch, heads, length, head_dim = dq.shape
    kernel = cuda_kernel("rotary_backward", ("dq", "dk", "dv", "log2_base_in"),
                         ("d_projection",), _BACKWARD, _HEADER)
    (d_projection,) = kernel(
        inputs=[dq, dk.astype(dq.dtype), dv.astype(dq.dtype), log2_base],
        template=[("T", dq.dtype), ("H", heads), ("D", head_dim)],
        **grid_stride_launch(batch * length * heads * (head_dim // 16)),
        output_shapes=[(batch, length, 3 * heads * head_dim)], output_dtypes=[dq.dtype])
    return d_projection


def make_heads(forward: Forward, backward: Backward
               ) -> Callable[[mx.array, int, float], Heads]:
    """``heads(projection (B, L, 3*H*D), n_heads, base) -> (q, k, v)``, each (B, H, L, D),
    q and k turned as ``mx.fast.rope`` turns them at offset 0, differentiable in the
    projection, from a ``forward`` and ``backward`` with the kernels' contracts."""

    @functools.cache
    def split_for(n_heads: int) -> Callable[[mx.array, mx.array], Heads]:
        @mx.custom_function
        def split(projection: mx.array, log2_base: mx.array) -> Heads:
            return forward(projection, n_heads, log2_base)

        @split.vjp
        def split_vjp(primals: tuple[mx.array, mx.array], cotangents: Heads, _outputs: Heads
                      ) -> tuple[mx.array, mx.array]:
            projection, log2_base = primals
            d_projection = backward(*cotangents, log2_base)
            return d_projection.astype(projection.dtype), mx.zeros_like(log2_base)

        return split

    def heads(projection: mx.array, n_heads: int, base: float) -> Heads:
        return split_for(n_heads)(projection, mx.array([math.log2(base)], mx.float32))

    return heads


#: The split and rotation with the CUDA kernels.
fused_heads = make_heads(cuda_forward, cuda_backward)


def ops_heads(projection: mx.array, n_heads: int, base: float, offset: int = 0) -> Heads:
    """The split and rotation in MLX operations (``mx.fast.rope`` at ``offset``): the path of
    CPUs, Metal and decoding with a cache."""
    batch, length, width = projection.shape
    head_dim = width // (3 * n_heads)
    # One split, not three slices: the gradient of a split is one concatenation, that of
    # each slice a full-size tensor of zeros to write into and add up.
    q, k, v = (part.reshape(batch, length, n_heads, head_dim).transpose(0, 2, 1, 3)
               for part in mx.split(projection, 3, axis=-1))
    q, k = (mx.fast.rope(part, head_dim, traditional=False, base=base, scale=1.0, offset=offset)
            for part in (q, k))
    return q, k, v
