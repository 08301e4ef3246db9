"""The project's CUDA kernels (``mx.fast.cuda_kernel``): where they run, how they are built
and launched, and the device helpers they share.

The kernels of :mod:`saga_model.head_loss`, :mod:`saga_model.rms_norm`,
:mod:`saga_model.gelu`, :mod:`saga_model.embedding` and :mod:`saga_model.rotary` are written
for bfloat16 and float32, those of :mod:`saga_model.attention` for bfloat16 on tensor cores,
those of :mod:`saga_model.fused_optimizer` (clipping and AdamW) for float32; elsewhere (CPUs,
Metal) each module's portable MLX path runs instead.
"""

from __future__ import annotations

import functools
import os
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


#: Device functions of the tensor-core kernels (sm_80 and later: bfloat16 ``mma.sync`` and
#: ``ldmatrix``), for a module's ``header``; see :func:`tensor_cores_run_here`.
TENSOR_CORES = """
typedef __nv_bfloat16 bf16;

// c (16x8, float32) += a (16x16, row-major) * b (16x8, column-major): lane g = lane / 4,
// t = lane % 4 holds a's (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); b's k rows
// 2t..2t+1 and 2t+8..2t+9 of column g; c's (g, 2t..2t+1) and (g+8, 2t..2t+1).
__device__ inline void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline uint32_t pack2(float lo, float hi) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}

__device__ inline float2 unpack2(uint32_t bits) {
  return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&bits));
}

// 2^x by the special-function unit (flushes subnormals; 2^-inf = 0).
__device__ inline float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Four 8x8 tiles of shared memory into a's or b's fragments: lanes 8i..8i+7 give the
// addresses of tile i's eight rows (16 bytes each); lane l gets tile i's (l/4, 2(l%4)) and
// (l/4, 2(l%4)+1) in r[i].
__device__ inline void ldmatrix_x4(uint32_t* r, const bf16* row) {
  const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
}

// The same, transposed: lane l gets tile i's (2(l%4), l/4) and (2(l%4)+1, l/4) in r[i].
__device__ inline void ldmatrix_x4_trans(uint32_t* r, const bf16* row) {
  const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
}
"""


#: The environment variable that, set to ``0``, runs the portable paths on a CUDA GPU too.
KERNELS_ENV = "GRAIN_CUDA_KERNELS"

#: Set to False to run every module's portable path on a CUDA GPU too (read when a function
#: is traced: before ``mx.compile`` first calls it); for comparisons of the two, or
#: ``GRAIN_CUDA_KERNELS=0`` where a GPU or CUDA version refuses one of the kernels.
kernels_enabled = os.environ.get(KERNELS_ENV, "1").strip() != "0"


def on_cuda_gpu() -> bool:
    """Whether MLX computes on a CUDA GPU now (its default device)."""
    return mx.cuda.is_available() and mx.default_device().type == mx.DeviceType.gpu


def kernels_run_here(dtype: mx.Dtype) -> bool:
    """Whether the kernels are enabled and MLX computes on a CUDA GPU now, in a dtype they
    take."""
    return kernels_enabled and on_cuda_gpu() and dtype in _KERNEL_DTYPES


def tensor_cores_run_here(dtype: mx.Dtype) -> bool:
    """Whether the tensor-core kernels run here: :func:`kernels_run_here` for bfloat16, on a
    GPU of compute capability 8.0 or later."""
    return kernels_run_here(dtype) and dtype == mx.bfloat16 and _compute_capability() >= 8


@functools.cache
def _compute_capability() -> int:
    """The major compute capability of the CUDA GPU (0 where MLX does not say)."""
    return int(mx.device_info().get("compute_capability_major", 0))


@functools.cache
def cuda_kernel(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], source: str,
                header: str = "", shared_memory: int = 0) -> Callable[..., list[mx.array]]:
    """The kernel ``saga_<name>`` (built once per process) whose body ``source`` may call the
    shared device helpers (``warp_sum``, ``warp_max``, ``aligned16``, ``load8``, ``store8``)
    and those of ``header``, with ``shared_memory`` bytes of dynamic shared memory a block."""
    return mx.fast.cuda_kernel(name=f"saga_{name}", input_names=list(inputs),
                               output_names=list(outputs), header=_SHARED_HEADER + header,
                               source=source, shared_memory=shared_memory)


def block_count(work_items: int, threads: int, max_blocks: int) -> int:
    """Blocks of ``threads`` for ``work_items`` threads' worth of work, at most ``max_blocks``
    (a kernel with a grid-stride loop then gives each thread several items)."""
    return max(1, min(-(-work_items // threads), max_blocks))


def launch(blocks: int, threads: int, rows: int = 1) -> dict[str, tuple[int, int, int]]:
    """The ``grid`` and ``threadgroup`` arguments of ``blocks`` blocks of ``threads`` along x,
    for each of ``rows`` along y (``blockIdx.y``)."""
    return {"grid": (blocks * threads, rows, 1), "threadgroup": (threads, 1, 1)}


def grid_stride_launch(work_items: int) -> dict[str, tuple[int, int, int]]:
    """The launch of a kernel whose grid-stride loop covers ``work_items``: blocks of 256
    threads, one item a thread, at most 4,096 blocks (then each thread takes several)."""
    return launch(block_count(work_items, 256, 4096), 256)
