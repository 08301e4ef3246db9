"""The project's CUDA kernels (``mx.fast.cuda_kernel``): where they run, how they are built
and launched, and the device helpers they share.

The kernels of :mod:`saga_model.head_loss`, :mod:`saga_model.rms_norm`,
:mod:`saga_model.gelu`, :mod:`saga_model.embedding` and :mod:`saga_model.rotary` are written
for bfloat16 and float32; elsewhere (CPUs, Metal) each module's portable MLX path runs instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import mlx.core as mx

#: The dtypes the kernels are written for.
_KERNEL_DTYPES = (mx.bfloat16, mx.float32)

#: Device functions every kernel may call: warp reductions, and eight values loaded or stored
#: at once (one 16-byte access for bfloat16 at an aligned address).
_SHARED_HEADER = """
__device__ inline float warp_sum(float x) {
  #pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffff, x, offset);
  return x;
}

__device__ inline float warp_max(float x) {
  #pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, offset));
  }
  return x;
}

__device__ inline bool aligned16(const void* p) {
  return reinterpret_cast<size_t>(p) % 16 == 0;
}

__device__ inline void load8(const __nv_bfloat16* p, float* out, bool aligned) {
  if (aligned) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __bfloat1622float2(pairs[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    #pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = __bfloat162float(p[i]);
  }
}

__device__ inline void store8(__nv_bfloat16* p, const float* values, bool aligned) {
  if (aligned) {
    uint4 raw;
    __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&raw);
    #pragma unroll
    for (int i = 0; i < 4; ++i) pairs[i] = __floats2bfloat162_rn(values[2 * i], values[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
    #pragma unroll
    for (int i = 0; i < 8; ++i) p[i] = __float2bfloat16(values[i]);
  }
}

__device__ inline void load8(const float* p, float* out, bool aligned) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = p[i];
}

__device__ inline void store8(float* p, const float* values, bool aligned) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) p[i] = values[i];
}
"""


#: Set to False to run every module's portable path on a CUDA GPU too (read when a function
#: is traced: before ``mx.compile`` first calls it); for comparisons of the two.
kernels_enabled = True


def kernels_run_here(dtype: mx.Dtype) -> bool:
    """Whether the kernels are enabled and MLX computes on a CUDA GPU now, in a dtype they
    take."""
    return (kernels_enabled and mx.cuda.is_available()
            and mx.default_device().type == mx.DeviceType.gpu and dtype in _KERNEL_DTYPES)


@functools.cache
def cuda_kernel(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], source: str,
                header: str = "") -> Callable[..., list[mx.array]]:
    """The kernel ``saga_<name>`` (built once per process) whose body ``source`` may call the
    shared device helpers (``warp_sum``, ``warp_max``, ``aligned16``, ``load8``, ``store8``)
    and those of
    ``header``."""
    return mx.fast.cuda_kernel(name=f"saga_{name}", input_names=list(inputs),
                               output_names=list(outputs), header=_SHARED_HEADER + header,
                               source=source)


def block_count(work_items: int, threads: int, max_blocks: int) -> int:
    """Blocks of ``threads`` for ``work_items`` threads' worth of work, at most ``max_blocks``
    (a kernel with a grid-stride loop then gives each thread several items)."""
    return max(1, min(-(-work_items // threads), max_blocks))


def launch(blocks: int, threads: int) -> dict[str, tuple[int, int, int]]:
    """The ``grid`` and ``threadgroup`` arguments of ``blocks`` one-dimensional blocks."""
    return {"grid": (blocks * threads, 1, 1), "threadgroup": (threads, 1, 1)}


def grid_stride_launch(work_items: int) -> dict[str, tuple[int, int, int]]:
    """The launch of a kernel whose grid-stride loop covers ``work_items``: blocks of 256
    threads, one item a thread, at most 4,096 blocks (then each thread takes several)."""
    return launch(block_count(work_items, 256, 4096), 256)
