"""Causal self-attention on tensor cores for short heads: flash-attention kernels each way.

With heads of 32 dimensions, cuDNN's attention behind ``mx.fast.scaled_dot_product_attention``
ran at about 40 TFLOP/s forward and 30 backward on an H100 (tiles sized for heads of 64 and
more): 2.2 ms of a 10 ms training step at batch 256 with its helper kernels and the output's
transpose. Here one block takes one (batch, head): it loads the sequence's keys and values
(or, for the keys' gradient, its queries and output gradients) into shared memory once, then
each warp runs its groups of 16 queries through the key blocks at or before them with
bfloat16 ``mma.sync`` products in float32, the softmax kept online (flash attention, Dao
2022-2023): the scores never reach memory, and no barrier or global load interrupts a
warp's loop. The groups go to the warps in snake order, so that causal work evens out. Both
operands of every product come from row-major tiles through ``ldmatrix`` (transposed where
needed). The forward kernel writes the output in the layout the output projection reads,
``(B, L, H * D)``, and the log-sum-exp of each row; the backward pass is one kernel for the
queries' gradient (which also writes each row's ``sum(dO * O)``) and one for the keys' and
values', so no gradient is added atomically. The first version (a block per 64 queries, the
key blocks streamed through shared memory between barriers) took 1.75 ms for the three layers
at batch 256 (``benchmarks/train_breakdown.py --profile``).

:func:`make_attention` builds the differentiable function around any pair with the kernels'
contracts, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_attention.py``); the model uses :data:`flash_attention` where
:func:`flash_attention_available` (a CUDA GPU with tensor cores, bfloat16, a sequence whose
two tiles fit in a block's shared memory) and ``mx.fast``'s attention elsewhere (CPUs, Metal,
float32, decoding with a cache).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from .cuda import TENSOR_CORES, cuda_kernel, launch, tensor_cores_run_here

#: ``(q, k, v (B, H, L, D), scale (1,)) -> (out (B, L, H, D), lse (B, H, L) float32)``: lse is
#: each row's ``logsumexp(scale * scores) / ln 2`` (the kernels work in powers of two).
Forward = Callable[[mx.array, mx.array, mx.array, mx.array], tuple[mx.array, mx.array]]
#: ``(q, k, v, out, lse, d_out, scale) -> (dq, dk, dv)``, each (B, H, L, D).
Backward = Callable[..., tuple[mx.array, mx.array, mx.array]]

#: Warps of a block (one block per (batch, head)) in the forward and the backward kernels:
#: two blocks share an SM at the model's shape (their two sequences' tiles take 84 KB of
#: shared memory each), and the backward kernels' registers allow six warps each.
_FORWARD_WARPS = 8
_BACKWARD_WARPS = 6
#: The shared memory a block may have on every GPU with tensor cores the kernels use
#: (sm_80 and later allow at least 99 KB): longer sequences or wider heads take mx.fast's.
_SHARED_MEMORY = 99 * 1024

#: Pairs of values in global memory, whole sequences' rows in shared memory (row-major, eight
#: columns of padding; zeros past the sequence's end), the warps' share of the rows, the
#: tensor-core products over tiles of 64 rows, and reductions over a lane's quad.
_HEADER = TENSOR_CORES + """
// Two neighbouring values of global memory, or zeros past the end (`valid` false).
__device__ inline uint32_t load_pair(const bf16* p, bool valid, bool aligned) {
  if (!valid) return 0u;
  if (aligned) return *reinterpret_cast<const uint32_t*>(p);
  return pack2(__bfloat162float(p[0]), __bfloat162float(p[1]));
}

__device__ inline void store_pair(bf16* p, float lo, float hi, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint32_t*>(p) = pack2(lo, hi);
  } else {
    p[0] = __float2bfloat16(lo);
    p[1] = __float2bfloat16(hi);
  }
}

// Shared memory of the block (its size set at the kernel's launch): whole sequences' rows.
extern __shared__ __align__(16) bf16 shared_rows[];

// Rows 0..padded-1 of a (length, D) slab whose rows are `stride` apart, into `rows` (D+8
// columns: eight of padding keep ldmatrix's eight rows on distinct banks; zeros past the
// end): the whole block, 16 bytes a thread at a time.
template <int D>
__device__ inline void load_rows(const bf16* slab, size_t stride, int length, int padded,
                                 bool aligned, bf16 (*rows)[D + 8]) {
  #pragma unroll 4
  for (int i = threadIdx.x; i < padded * (D / 8); i += blockDim.x) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    if (r < length) {
      const bf16* src = slab + (size_t)r * stride + c;
      if (aligned) {
        raw = *reinterpret_cast<const uint4*>(src);
      } else {
        bf16* values = reinterpret_cast<bf16*>(&raw);
        for (int e = 0; e < 8; ++e) values[e] = src[e];
      }
    }
    *reinterpret_cast<uint4*>(&rows[r][c]) = raw;
  }
}

// The first row of a warp's group of 16 rows in `round`: groups go to the block's warps in
// snake order (warp w gets group r * WARPS + w in even rounds, r * WARPS + WARPS - 1 - w in
// odd ones), so every warp gets about as many causal pairs as the others.
template <int WARPS>
__device__ inline int snake_first(int round, int warp) {
  return 16 * (round * WARPS + (round % 2 == 0 ? warp : WARPS - 1 - warp));
}

// -inf where a 16 x 64 tile's column (first_column + ...) lies after its row (rows ra and rb)
// or, with TRANSPOSED, before it.
template <bool TRANSPOSED>
__device__ inline void mask_tile(float (*s)[4], int first_column, int ra, int rb) {
  const int t = threadIdx.x % 4;
  #pragma unroll
  for (int j = 0; j < 8; ++j) {
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int column = first_column + j * 8 + 2 * t + (e & 1), row = e < 2 ? ra : rb;
      if (TRANSPOSED ? column < row : column > row) s[j][e] = -INFINITY;
    }
  }
}

// A warp's 16 rows (first..first+15) of a slab as the a fragments of its D columns.
template <int D>
__device__ inline void load_fragments(const bf16* slab, size_t stride, int first, int length,
                                      bool aligned, uint32_t (*frag)[4]) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int ra = first + g, rb = first + g + 8;
  #pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int col = kk * 16 + 2 * t;
    frag[kk][0] = load_pair(slab + (size_t)ra * stride + col, ra < length, aligned);
    frag[kk][1] = load_pair(slab + (size_t)rb * stride + col, rb < length, aligned);
    frag[kk][2] = load_pair(slab + (size_t)ra * stride + col + 8, ra < length, aligned);
    frag[kk][3] = load_pair(slab + (size_t)rb * stride + col + 8, rb < length, aligned);
  }
}

// s (16 x 64: eight c fragments) = a (16 x D, fragments) times the 64 rows of `rows`,
// transposed: ldmatrix gives b of two 8-row fragments at once.
template <int D>
__device__ inline void scores(const uint32_t (*a)[4], const bf16 (*rows)[D + 8],
                              float (*s)[4]) {
  const int lane = threadIdx.x % 32;
  #pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
  #pragma unroll
  for (int j = 0; j < 8; j += 2) {
    #pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t b[4];
      ldmatrix_x4(b, &rows[j * 8 + lane % 8 + (lane / 16) * 8][kk * 16 + ((lane / 8) % 2) * 8]);
      mma16816(s[j], a[kk], b[0], b[1]);
      mma16816(s[j + 1], a[kk], b[2], b[3]);
    }
  }
}

// The c fragments of a 16 x 64 product, rounded to bfloat16, as the a fragments of its four
// 16-column chunks.
__device__ inline void as_fragments(const float (*s)[4], uint32_t (*frag)[4]) {
  #pragma unroll
  for (int j = 0; j < 8; ++j) {
    frag[j / 2][(j % 2) * 2] = pack2(s[j][0], s[j][1]);
    frag[j / 2][(j % 2) * 2 + 1] = pack2(s[j][2], s[j][3]);
  }
}

// acc (16 x D) += a (16 x 64, four chunks of fragments) times a 64 x D tile of `rows`, read
// transposed by ldmatrix: two 8-column fragments of b at once.
template <int D>
__device__ inline void accumulate(float (*acc)[4], const uint32_t (*a)[4],
                                  const bf16 (*rows)[D + 8]) {
  const int lane = threadIdx.x % 32;
  #pragma unroll
  for (int c = 0; c < 4; ++c) {
    #pragma unroll
    for (int jd = 0; jd < D / 8; jd += 2) {
      uint32_t b[4];
      const int row = c * 16 + lane % 8 + ((lane / 8) % 2) * 8, col = jd * 8 + (lane / 16) * 8;
      ldmatrix_x4_trans(b, &rows[row][col]);
      mma16816(acc[jd], a[c], b[0], b[1]);
      mma16816(acc[jd + 1], a[c], b[2], b[3]);
    }
  }
}

// A warp's 16 x D result rows (first..) into a slab, times `factor`.
template <int D>
__device__ inline void store_rows(bf16* slab, size_t stride, int first, int length,
                                  bool aligned, const float (*acc)[4], float factor_a,
                                  float factor_b) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int ra = first + g, rb = first + g + 8;
  #pragma unroll
  for (int jd = 0; jd < D / 8; ++jd) {
    const int col = jd * 8 + 2 * t;
    if (ra < length) {
      store_pair(slab + (size_t)ra * stride + col, acc[jd][0] * factor_a,
                 acc[jd][1] * factor_a, aligned);
    }
    if (rb < length) {
      store_pair(slab + (size_t)rb * stride + col, acc[jd][2] * factor_b,
                 acc[jd][3] * factor_b, aligned);
    }
  }
}

__device__ inline float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  return x + __shfl_xor_sync(0xffffffff, x, 2);
}

__device__ inline float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
"""

#: Where each kernel's block and warp are: the sequence of one (batch, head) a block, the
#: slabs of q, k and v (B, H, L, D) and of the output and its gradient (B, L, H, D), and the
#: block's two whole-sequence tiles in shared memory.
_PLACE = """
  constexpr int KT = D / 16, DT = D / 8;
  const int length = q_shape[2];
  const int padded = (length + 63) / 64 * 64, rounds = (length + 16 * WARPS - 1) / (16 * WARPS);
  const size_t bh = blockIdx.y, batch = bh / H, head = bh % H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4, g = lane / 4;
  const float scale = scale_in[0], scale2 = scale * 1.4426950408889634f;
  const bf16* qs = q + bh * length * D;
  const bf16* ks = k + bh * length * D;
  const bf16* vs = v + bh * length * D;
  const size_t wide = (size_t)H * D;
  bf16 (*tile_a)[D + 8] = reinterpret_cast<bf16 (*)[D + 8]>(shared_rows);
  bf16 (*tile_b)[D + 8] = tile_a + padded;
"""

#: Each warp's groups of 16 queries against the keys at or before them (whole key blocks of
#: 64, the last one masked); out (B, L, H, D) and lse (B, H, L). Scores stay unscaled: the
#: running maximum is of them, and one multiply-add scales and shifts each before exp2.
_FORWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out);
  bf16 (*k_rows)[D + 8] = tile_a, (*v_rows)[D + 8] = tile_b;
  load_rows<D>(ks, D, length, padded, aligned, k_rows);
  load_rows<D>(vs, D, length, padded, aligned, v_rows);
  __syncthreads();
  bf16* outs = out + (batch * length * H + head) * D;
  for (int round = 0; round < rounds; ++round) {
    const int first = snake_first<WARPS>(round, warp), ra = first + g, rb = ra + 8;
    if (first >= length) continue;
    uint32_t qa[KT][4];
    load_fragments<D>(qs, D, first, length, aligned, qa);
    float acc[DT][4] = {};
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
    const int last = (first + 15) / 64;
    for (int kb = 0; kb <= last; ++kb) {
      float s[8][4];
      scores<D>(qa, k_rows + kb * 64, s);
      if (kb == last) mask_tile<false>(s, kb * 64, ra, rb);
      float top_a = m_a, top_b = m_b;
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        top_a = fmaxf(top_a, fmaxf(s[j][0], s[j][1]));
        top_b = fmaxf(top_b, fmaxf(s[j][2], s[j][3]));
      }
      top_a = quad_max(top_a);
      top_b = quad_max(top_b);
      const float keep_a = exp2_fast((m_a - top_a) * scale2);
      const float keep_b = exp2_fast((m_b - top_b) * scale2);
      m_a = top_a;
      m_b = top_b;
      l_a *= keep_a;
      l_b *= keep_b;
      #pragma unroll
      for (int jd = 0; jd < DT; ++jd) {
        acc[jd][0] *= keep_a;
        acc[jd][1] *= keep_a;
        acc[jd][2] *= keep_b;
        acc[jd][3] *= keep_b;
      }
      const float shift_a = m_a * scale2, shift_b = m_b * scale2;
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        s[j][0] = exp2_fast(fmaf(s[j][0], scale2, -shift_a));
        s[j][1] = exp2_fast(fmaf(s[j][1], scale2, -shift_a));
        s[j][2] = exp2_fast(fmaf(s[j][2], scale2, -shift_b));
        s[j][3] = exp2_fast(fmaf(s[j][3], scale2, -shift_b));
        l_a += s[j][0] + s[j][1];
        l_b += s[j][2] + s[j][3];
      }
      uint32_t pa[4][4];
      as_fragments(s, pa);
      accumulate<D>(acc, pa, v_rows + kb * 64);
    }
    l_a = quad_sum(l_a);
    l_b = quad_sum(l_b);
    store_rows<D>(outs, wide, first, length, aligned, acc, 1.0f / l_a, 1.0f / l_b);
    if (t == 0 && ra < length) lse[bh * length + ra] = m_a * scale2 + log2f(l_a);
    if (t == 0 && rb < length) lse[bh * length + rb] = m_b * scale2 + log2f(l_b);
  }
"""

#: The queries' gradient of each warp's groups of 16 queries, and each row's sum(dO * O)
#: (`delta`, for the keys' kernel): dS = P * (dO V^T - delta), dq = scale * dS K.
_QUERIES_BACKWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out)
                       && aligned16(d_out) && aligned16(dq);
  bf16 (*k_rows)[D + 8] = tile_a, (*v_rows)[D + 8] = tile_b;
  load_rows<D>(ks, D, length, padded, aligned, k_rows);
  load_rows<D>(vs, D, length, padded, aligned, v_rows);
  __syncthreads();
  const bf16* outs = out + (batch * length * H + head) * D;
  const bf16* d_outs = d_out + (batch * length * H + head) * D;
  for (int round = 0; round < rounds; ++round) {
    const int first = snake_first<WARPS>(round, warp), ra = first + g, rb = ra + 8;
    if (first >= length) continue;
    uint32_t qa[KT][4], da[KT][4], oa[KT][4];
    load_fragments<D>(qs, D, first, length, aligned, qa);
    load_fragments<D>(d_outs, wide, first, length, aligned, da);
    load_fragments<D>(outs, wide, first, length, aligned, oa);
    float delta_a = 0.0f, delta_b = 0.0f;
    #pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
      #pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 d = unpack2(da[kk][e]), o = unpack2(oa[kk][e]);
        if (e % 2 == 0) delta_a += d.x * o.x + d.y * o.y;
        else delta_b += d.x * o.x + d.y * o.y;
      }
    }
    delta_a = quad_sum(delta_a);
    delta_b = quad_sum(delta_b);
    const float lse_a = ra < length ? lse[bh * length + ra] : 0.0f;
    const float lse_b = rb < length ? lse[bh * length + rb] : 0.0f;
    if (t == 0 && ra < length) delta[bh * length + ra] = delta_a;
    if (t == 0 && rb < length) delta[bh * length + rb] = delta_b;
    float acc[DT][4] = {};
    const int last = (first + 15) / 64;
    for (int kb = 0; kb <= last; ++kb) {
      float s[8][4], dp[8][4];
      scores<D>(qa, k_rows + kb * 64, s);
      scores<D>(da, v_rows + kb * 64, dp);
      if (kb == last) mask_tile<false>(s, kb * 64, ra, rb);
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        #pragma unroll
        for (int e = 0; e < 4; ++e) {
          const bool upper = e < 2;
          const float p = exp2_fast(fmaf(s[j][e], scale2, -(upper ? lse_a : lse_b)));
          s[j][e] = p * (dp[j][e] - (upper ? delta_a : delta_b));
        }
      }
      uint32_t dsa[4][4];
      as_fragments(s, dsa);
      accumulate<D>(acc, dsa, k_rows + kb * 64);
    }
    store_rows<D>(dq + bh * length * D, D, first, length, aligned, acc, scale, scale);
  }
"""

#: The keys' and values' gradients of each warp's groups of 16 keys against the queries at or
#: after them (whole query blocks of 64 from the one holding the group): dv = P^T dO,
#: dk = scale * dS^T Q. The block's shared memory also holds every row's lse and delta.
_KEYS_BACKWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(d_out)
                       && aligned16(dk) && aligned16(dv);
  bf16 (*q_rows)[D + 8] = tile_a, (*d_rows)[D + 8] = tile_b;
  float* lse_s = reinterpret_cast<float*>(tile_b + padded);
  float* delta_s = lse_s + padded;
  const bf16* d_outs = d_out + (batch * length * H + head) * D;
  load_rows<D>(qs, D, length, padded, aligned, q_rows);
  load_rows<D>(d_outs, wide, length, padded, aligned, d_rows);
  for (int i = threadIdx.x; i < padded; i += blockDim.x) {
    lse_s[i] = i < length ? lse[bh * length + i] : 0.0f;
    delta_s[i] = i < length ? delta[bh * length + i] : 0.0f;
  }
  __syncthreads();
  const int blocks = padded / 64;
  for (int round = 0; round < rounds; ++round) {
    const int first = snake_first<WARPS>(round, warp), ka_row = first + g, kb_row = ka_row + 8;
    if (first >= length) continue;
    uint32_t ka[KT][4], va[KT][4];
    load_fragments<D>(ks, D, first, length, aligned, ka);
    load_fragments<D>(vs, D, first, length, aligned, va);
    float dk_acc[DT][4] = {}, dv_acc[DT][4] = {};
    for (int qb = first / 64; qb < blocks; ++qb) {
      float s[8][4], dp[8][4];
      scores<D>(ka, q_rows + qb * 64, s);
      scores<D>(va, d_rows + qb * 64, dp);
      // Queries before the keys, or past the end (whose lse and delta are zeros).
      if (qb == first / 64) mask_tile<true>(s, qb * 64, ka_row, kb_row);
      if (qb == blocks - 1) mask_tile<false>(s, qb * 64, length - 1, length - 1);
      uint32_t pa[4][4];
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        #pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int column = qb * 64 + j * 8 + 2 * t + (e & 1);
          const float p = exp2_fast(fmaf(s[j][e], scale2, -lse_s[column]));
          s[j][e] = p;
          dp[j][e] = p * (dp[j][e] - delta_s[column]);
        }
      }
      as_fragments(s, pa);
      accumulate<D>(dv_acc, pa, d_rows + qb * 64);
      as_fragments(dp, pa);
      accumulate<D>(dk_acc, pa, q_rows + qb * 64);
    }
    store_rows<D>(dk + bh * length * D, D, first, length, aligned, dk_acc, scale, scale);
    store_rows<D>(dv + bh * length * D, D, first, length, aligned, dv_acc, 1.0f, 1.0f);
  }
"""


def flash_attention_available(dtype: mx.Dtype, head_dim: int, length: int) -> bool:
    """Whether :data:`flash_attention` runs here: on a CUDA GPU with bfloat16 tensor cores,
    for bfloat16, heads of 16, 32 or 64 dimensions, and sequences whose keys and values (or
    queries and output gradients) fit in a block's shared memory."""
    return (tensor_cores_run_here(dtype) and head_dim in (16, 32, 64)
            and _shared_bytes(length, head_dim, keys=True) <= _SHARED_MEMORY)


def _shared_bytes(length: int, head_dim: int, keys: bool = False) -> int:
    """A block's shared memory: two tiles of the whole sequence (rows padded to 64, eight
    columns of padding), and with ``keys`` each row's lse and delta."""
    padded = -(-length // 64) * 64
    return 2 * padded * (head_dim + 8) * 2 + (2 * padded * 4 if keys else 0)


def _kernel(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], source: str,
            length: int, head_dim: int, keys: bool = False) -> Callable[..., list[mx.array]]:
    """The kernel ``name`` with the shared memory its sequences of ``length`` need (see
    :func:`_shared_bytes`)."""
    return cuda_kernel(name, inputs, outputs, source, _HEADER,
                       _shared_bytes(length, head_dim, keys))


def _launch(batch_heads: int, warps: int) -> dict[str, tuple[int, int, int]]:
    """One block of ``warps`` warps for each (batch, head)."""
    return launch(1, 32 * warps, batch_heads)


def cuda_forward(q: mx.array, k: mx.array, v: mx.array, scale: mx.array
                 ) -> tuple[mx.array, mx.array]:
    """Causal attention's output (B, L, H, D) and each row's log-sum-exp in base two
    (B, H, L), from q, k, v (B, H, L, D): one CUDA kernel."""
    batch, heads, length, head_dim = q.shape
    kernel = _kernel("attention_forward", ("q", "k", "v", "scale_in"), ("out", "lse"),
                     _FORWARD, length, head_dim)
    out, lse = kernel(
        inputs=[q, k, v, scale],
        template=[("H", heads), ("D", head_dim), ("WARPS", _FORWARD_WARPS)],
        **_launch(batch * heads, _FORWARD_WARPS),
        output_shapes=[(batch, length, heads, head_dim), (batch, heads, length)],
        output_dtypes=[q.dtype, mx.float32])
    return out, lse


def cuda_backward(q: mx.array, k: mx.array, v: mx.array, out: mx.array, lse: mx.array,
                  d_out: mx.array, scale: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The gradients of q, k and v (B, H, L, D) from that of the output (B, L, H, D): two CUDA
    kernels, the queries' first (it also writes the rows' ``sum(dO * O)``)."""
    batch, heads, length, head_dim = q.shape
    template = [("H", heads), ("D", head_dim), ("WARPS", _BACKWARD_WARPS)]
    shape = (batch, heads, length, head_dim)
    d_out = d_out.astype(q.dtype)
    queries = _kernel("attention_queries_backward",
                      ("q", "k", "v", "out", "d_out", "lse", "scale_in"), ("dq", "delta"),
                      _QUERIES_BACKWARD, length, head_dim)
    dq, delta = queries(inputs=[q, k, v, out, d_out, lse, scale], template=template,
                        **_launch(batch * heads, _BACKWARD_WARPS),
                        output_shapes=[shape, (batch, heads, length)],
                        output_dtypes=[q.dtype, mx.float32])
    keys = _kernel("attention_keys_backward",
                   ("q", "k", "v", "d_out", "lse", "delta", "scale_in"), ("dk", "dv"),
                   _KEYS_BACKWARD, length, head_dim, keys=True)
    dk, dv = keys(inputs=[q, k, v, d_out, lse, delta, scale], template=template,
                  **_launch(batch * heads, _BACKWARD_WARPS), output_shapes=[shape, shape],
                  output_dtypes=[q.dtype, q.dtype])
    return dq, dk, dv


def make_attention(forward: Forward, backward: Backward
                   ) -> Callable[[mx.array, mx.array, mx.array, float], mx.array]:
    """``attention(q, k, v (B, H, L, D), scale) -> (B, L, H * D)``: causal softmax attention,
    differentiable in q, k and v, from a ``forward`` and ``backward`` with the kernels'
    contracts."""

    @mx.custom_function
    def attend(q: mx.array, k: mx.array, v: mx.array, scale: mx.array
               ) -> tuple[mx.array, mx.array]:
        return forward(q, k, v, scale)

    @attend.vjp
    def attend_vjp(primals: tuple[mx.array, ...], cotangents: tuple[mx.array, mx.array],
                   outputs: tuple[mx.array, mx.array]) -> tuple[mx.array, ...]:
        q, k, v, scale = primals
        out, lse = outputs
        dq, dk, dv = backward(q, k, v, out, lse, cotangents[0], scale)
        return dq, dk, dv, mx.zeros_like(scale)

    def attention(q: mx.array, k: mx.array, v: mx.array, scale: float) -> mx.array:
        batch, heads, length, head_dim = q.shape
        out, _ = attend(q, k, v, mx.array([scale], mx.float32))
        return out.reshape(batch, length, heads * head_dim)

    return attention


#: Causal attention with the CUDA kernels.
flash_attention = make_attention(cuda_forward, cuda_backward)


def sdpa_attention(q: mx.array, k: mx.array, v: mx.array, scale: float,
                   mask: str | None = "causal") -> mx.array:
    """Attention by ``mx.fast.scaled_dot_product_attention`` (the path of CPUs, Metal, float32
    and decoding with a cache), in the output projection's layout (B, L, H * D)."""
    batch, heads, length, head_dim = q.shape
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    return out.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
