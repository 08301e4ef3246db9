"""Causal self-attention from the fused projection on tensor cores: flash-attention kernels.

With heads of 32 dimensions, cuDNN's attention behind ``mx.fast.scaled_dot_product_attention``
ran at about 40 TFLOP/s forward and 30 backward on an H100 (tiles sized for heads of 64 and
more): 2.2 ms of a 10 ms training step at batch 256 with its helper kernels and the output's
transpose, after a kernel that split the projection into heads and turned them by RoPE
(:mod:`saga_model.rotary`, 0.24 ms each way). Here the attention reads the projection
``(B, L, 3 * H * D)`` itself and turns its queries and keys as it loads them (the turns of
each position come in a small table, :func:`rope_turns`). One block takes one (batch, head):
it loads the sequence's keys and values into shared memory once, then each warp runs its
groups of 16 queries through the key blocks at or before them with bfloat16 ``mma.sync``
products in float32, the softmax kept online (flash attention, Dao 2022-2023): the scores
never reach memory, and no barrier or global load interrupts a warp's loop. The groups go to
the warps in snake order, so that causal work evens out. Both operands of every product come
from row-major tiles through ``ldmatrix`` (transposed where needed). The forward kernel
writes the output in the layout the output projection reads, ``(B, L, H * D)``, and the
log-sum-exp of each row. The backward kernel writes the projection's gradient in two phases:
the queries' (keys and values in shared memory; each row's ``sum(dO * O)`` kept there), then
the keys' and values' (queries and output gradients in shared memory), so nothing is added
atomically and the queries' and keys' gradients are turned back before they are stored.

:func:`make_attention` builds the differentiable function around any pair with the kernels'
contracts, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_attention.py``); the model uses :data:`flash_attention` where
:func:`flash_attention_available` (a CUDA GPU with tensor cores, bfloat16, a sequence whose
two tiles fit in a block's shared memory) and the heads of :mod:`saga_model.rotary` with
``mx.fast``'s attention elsewhere (CPUs, Metal, float32, decoding with a cache).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mlx.core as mx
import numpy as np

from .cuda import TENSOR_CORES, cuda_kernel, launch, tensor_cores_run_here

#: ``(projection (B, L, 3 * H * D), turns (L, D / 2, 2), scale (1,), heads) -> (out (B, L, H,
#: D), lse (B, H, L) float32)``: lse is each row's ``logsumexp(scale * scores) / ln 2`` (the
#: kernels work in powers of two).
Forward = Callable[[mx.array, mx.array, mx.array, int], tuple[mx.array, mx.array]]
#: ``(projection, turns, out, lse, d_out, scale, heads) -> d_projection``.
Backward = Callable[..., mx.array]

#: Warps of a block (one block per (batch, head)) in the forward and the backward kernels:
#: two blocks share an SM at the model's shape (their two sequences' tiles take 84 KB of
#: shared memory each), and the backward kernel's 174 registers a thread (nvcc, sm_90, heads
#: of 32) leave room for five warps each.
_FORWARD_WARPS = 8
_BACKWARD_WARPS = 5
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
// end), turned by RoPE where `turn` is given (each position's (cos, sin) of its D/2 pairs:
// dimension i < D/2 pairs with i + D/2): the whole block, eight pairs a thread at a time.
template <int D>
__device__ inline void load_rows(const bf16* slab, size_t stride, int length, int padded,
                                 bool aligned, const float2* turn, bf16 (*rows)[D + 8]) {
  constexpr int HALF = D / 2, OCTETS = HALF / 8;
  #pragma unroll 2
  for (int i = threadIdx.x; i < padded * OCTETS; i += blockDim.x) {
    const int r = i / OCTETS, c = (i % OCTETS) * 8;
    float x1[8] = {}, x2[8] = {};
    if (r < length) {
      load8(slab + (size_t)r * stride + c, x1, aligned);
      load8(slab + (size_t)r * stride + c + HALF, x2, aligned);
      if (turn != nullptr) {
        #pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float2 cs = turn[r * HALF + c + e];
          const float y1 = x1[e] * cs.x - x2[e] * cs.y;
          x2[e] = x1[e] * cs.y + x2[e] * cs.x;
          x1[e] = y1;
        }
      }
    }
    store8(&rows[r][c], x1, true);
    store8(&rows[r][c + HALF], x2, true);
  }
}

// A warp's a fragments (rows ra and rb, from load_fragments) turned by RoPE: the pair of
// column c < D/2 is column c + D/2, held by the same lane.
template <int D>
__device__ inline void turn_fragments(uint32_t (*frag)[4], int ra, int rb, int length,
                                      const float2* turn) {
  constexpr int HALF = D / 2;
  const int t = threadIdx.x % 4;
  #pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int base = kk * 16 + (e / 2) * 8, row = e % 2 ? rb : ra;
      if (base >= HALF || row >= length) continue;
      const int kk2 = (base + HALF) / 16, e2 = e % 2 + ((base + HALF) % 16) / 8 * 2;
      const float2 x1 = unpack2(frag[kk][e]), x2 = unpack2(frag[kk2][e2]);
      const float2 lo = turn[row * HALF + base + 2 * t], hi = turn[row * HALF + base + 2 * t + 1];
      frag[kk][e] = pack2(x1.x * lo.x - x2.x * lo.y, x1.y * hi.x - x2.y * hi.y);
      frag[kk2][e2] = pack2(x1.x * lo.y + x2.x * lo.x, x1.y * hi.y + x2.y * hi.x);
    }
  }
}

// A warp's 16 x D gradient (c fragments, rows ra and rb) turned back by RoPE's transpose.
template <int D>
__device__ inline void turn_back(float (*acc)[4], int ra, int rb, int length,
                                 const float2* turn) {
  constexpr int HALF = D / 2;
  const int t = threadIdx.x % 4;
  #pragma unroll
  for (int jd = 0; jd < HALF / 8; ++jd) {
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = e < 2 ? ra : rb;
      if (row >= length) continue;
      const float2 cs = turn[row * HALF + jd * 8 + 2 * t + e % 2];
      const float g1 = acc[jd][e], g2 = acc[jd + HALF / 8][e];
      acc[jd][e] = g1 * cs.x + g2 * cs.y;
      acc[jd + HALF / 8][e] = g2 * cs.x - g1 * cs.y;
    }
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
#: slabs of its q, k and v in the projection (B, L, 3 * H * D) and of the output and its
#: gradient (B, L, H * D), the turns of RoPE, and the block's two whole-sequence tiles in
#: shared memory.
_PLACE = """
  constexpr int KT = D / 16, DT = D / 8, WIDTH = H * D;
  const int length = projection_shape[1];
  const int padded = (length + 63) / 64 * 64, rounds = (length + 16 * WARPS - 1) / (16 * WARPS);
  const size_t bh = blockIdx.y, batch = bh / H, head = bh % H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4, g = lane / 4;
  const float scale = scale_in[0], scale2 = scale * 1.4426950408889634f;
  const size_t stride = 3 * WIDTH;
  const bf16* qs = projection + batch * length * stride + head * D;
  const bf16* ks = qs + WIDTH;
  const bf16* vs = qs + 2 * WIDTH;
  const float2* turn = reinterpret_cast<const float2*>(turns);
  bf16 (*tile_a)[D + 8] = reinterpret_cast<bf16 (*)[D + 8]>(shared_rows);
  bf16 (*tile_b)[D + 8] = tile_a + padded;
"""

#: Each warp's groups of 16 queries against the keys at or before them (whole key blocks of
#: 64, the last one masked); out (B, L, H, D) and lse (B, H, L). Scores stay unscaled: the
#: running maximum is of them, and one multiply-add scales and shifts each before exp2.
_FORWARD = _PLACE + """
  const bool aligned = aligned16(projection) && aligned16(out);
  bf16 (*k_rows)[D + 8] = tile_a, (*v_rows)[D + 8] = tile_b;
  load_rows<D>(ks, stride, length, padded, aligned, turn, k_rows);
  load_rows<D>(vs, stride, length, padded, aligned, nullptr, v_rows);
  __syncthreads();
  bf16* outs = out + (batch * length * H + head) * D;
  for (int round = 0; round < rounds; ++round) {
    const int first = snake_first<WARPS>(round, warp), ra = first + g, rb = ra + 8;
    if (first >= length) continue;
    uint32_t qa[KT][4];
    load_fragments<D>(qs, stride, first, length, aligned, qa);
    turn_fragments<D>(qa, ra, rb, length, turn);
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
    store_rows<D>(outs, WIDTH, first, length, aligned, acc, 1.0f / l_a, 1.0f / l_b);
    if (t == 0 && ra < length) lse[bh * length + ra] = m_a * scale2 + log2f(l_a);
    if (t == 0 && rb < length) lse[bh * length + rb] = m_b * scale2 + log2f(l_b);
  }
"""

#: The projection's gradient (B, L, 3 * H * D) in two phases with one barrier between.
#: Queries: the keys and values in shared memory, each warp's groups of 16 queries through
#: the key blocks at or before them: dS = P * (dO V^T - delta), dq = scale * dS K, with each
#: row's delta = sum(dO * O) kept in shared memory. Keys: the queries and output gradients in
#: shared memory, each warp's groups of 16 keys through the query blocks at or after them:
#: dv = P^T dO, dk = scale * dS^T Q. dq and dk are turned back by RoPE's transpose.
_BACKWARD = _PLACE + """
  const bool aligned = aligned16(projection) && aligned16(out) && aligned16(d_out)
                       && aligned16(d_projection);
  float* lse_s = reinterpret_cast<float*>(tile_b + padded);
  float* delta_s = lse_s + padded;
  const bf16* outs = out + (batch * length * H + head) * D;
  const bf16* d_outs = d_out + (batch * length * H + head) * D;
  bf16* d_qs = d_projection + batch * length * stride + head * D;
  bf16* d_ks = d_qs + WIDTH;
  bf16* d_vs = d_qs + 2 * WIDTH;
  {
    bf16 (*k_rows)[D + 8] = tile_a, (*v_rows)[D + 8] = tile_b;
    load_rows<D>(ks, stride, length, padded, aligned, turn, k_rows);
    load_rows<D>(vs, stride, length, padded, aligned, nullptr, v_rows);
    for (int i = threadIdx.x; i < padded; i += blockDim.x) {
      lse_s[i] = i < length ? lse[bh * length + i] : 0.0f;
      delta_s[i] = 0.0f;
    }
    __syncthreads();
    for (int round = 0; round < rounds; ++round) {
      const int first = snake_first<WARPS>(round, warp), ra = first + g, rb = ra + 8;
      if (first >= length) continue;
      uint32_t qa[KT][4], da[KT][4], oa[KT][4];
      load_fragments<D>(qs, stride, first, length, aligned, qa);
      turn_fragments<D>(qa, ra, rb, length, turn);
      load_fragments<D>(d_outs, WIDTH, first, length, aligned, da);
      load_fragments<D>(outs, WIDTH, first, length, aligned, oa);
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
      const float lse_a = lse_s[ra], lse_b = lse_s[rb];
      if (t == 0 && ra < length) delta_s[ra] = delta_a;
      if (t == 0 && rb < length) delta_s[rb] = delta_b;
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
      turn_back<D>(acc, ra, rb, length, turn);
      store_rows<D>(d_qs, stride, first, length, aligned, acc, scale, scale);
    }
  }
  __syncthreads();
  bf16 (*q_rows)[D + 8] = tile_a, (*d_rows)[D + 8] = tile_b;
  load_rows<D>(qs, stride, length, padded, aligned, turn, q_rows);
  load_rows<D>(d_outs, WIDTH, length, padded, aligned, nullptr, d_rows);
  __syncthreads();
  const int blocks = padded / 64;
  for (int round = 0; round < rounds; ++round) {
    const int first = snake_first<WARPS>(round, warp), ra = first + g, rb = ra + 8;
    if (first >= length) continue;
    uint32_t ka[KT][4], va[KT][4];
    load_fragments<D>(ks, stride, first, length, aligned, ka);
    turn_fragments<D>(ka, ra, rb, length, turn);
    load_fragments<D>(vs, stride, first, length, aligned, va);
    float dk_acc[DT][4] = {}, dv_acc[DT][4] = {};
    for (int qb = first / 64; qb < blocks; ++qb) {
      float s[8][4], dp[8][4];
      scores<D>(ka, q_rows + qb * 64, s);
      scores<D>(va, d_rows + qb * 64, dp);
      // Queries before the keys, or past the end (whose lse and delta are zeros).
      if (qb == first / 64) mask_tile<true>(s, qb * 64, ra, rb);
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
    turn_back<D>(dk_acc, ra, rb, length, turn);
    store_rows<D>(d_ks, stride, first, length, aligned, dk_acc, scale, scale);
    store_rows<D>(d_vs, stride, first, length, aligned, dv_acc, 1.0f, 1.0f);
  }
"""


def flash_attention_available(dtype: mx.Dtype, head_dim: int, length: int) -> bool:
    """Whether :data:`flash_attention` runs here: on a CUDA GPU with bfloat16 tensor cores,
    for bfloat16, heads of 16, 32 or 64 dimensions, and sequences whose two tiles (keys and
    values, or queries and output gradients) fit in a block's shared memory."""
    return (tensor_cores_run_here(dtype) and head_dim in (16, 32, 64)
            and _shared_bytes(length, head_dim) <= _SHARED_MEMORY)


def _shared_bytes(length: int, head_dim: int) -> int:
    """A block's shared memory: two tiles of the whole sequence (rows padded to 64, eight
    columns of padding), and each row's lse and delta (the backward kernel's)."""
    padded = -(-length // 64) * 64
    return 2 * padded * (head_dim + 8) * 2 + 2 * padded * 4


@functools.cache
def rope_turns(length: int, head_dim: int, base: float) -> mx.array:
    """Each position's (cos, sin) of RoPE's ``head_dim / 2`` turns, (length, head_dim / 2, 2)
    in float32: ``mx.fast.rope``'s non-traditional rotation at offset 0, dimension
    ``i < D/2`` paired with ``i + D/2`` and turned by ``position * base ** (-i / (D/2))``.
    Made once per shape (in float32 with NumPy): every layer and step reads the same table."""
    half = head_dim // 2
    exponents = -(np.arange(half, dtype=np.float32) / half) * np.float32(math.log2(base))
    angles = np.arange(length, dtype=np.float32)[:, None] * np.exp2(exponents)
    return mx.array(np.stack([np.cos(angles), np.sin(angles)], axis=-1))


def _launch(batch_heads: int, warps: int) -> dict[str, tuple[int, int, int]]:
    """One block of ``warps`` warps for each (batch, head)."""
    return launch(1, 32 * warps, batch_heads)


def cuda_forward(projection: mx.array, turns: mx.array, scale: mx.array, heads: int
                 ) -> tuple[mx.array, mx.array]:
    """Causal attention's output (B, L, H, D) and each row's log-sum-exp in base two
    (B, H, L), from the projection (B, L, 3 * H * D) whose queries and keys ``turns`` rotate
    (see :func:`rope_turns`): one CUDA kernel."""
    batch, length, width = projection.shape
    head_dim = width // (3 * heads)
    kernel = cuda_kernel("attention_forward", ("projection", "turns", "scale_in"),
                         ("out", "lse"), _FORWARD, _HEADER, _shared_bytes(length, head_dim))
    out, lse = kernel(
        inputs=[projection, turns, scale],
        template=[("H", heads), ("D", head_dim), ("WARPS", _FORWARD_WARPS)],
        **_launch(batch * heads, _FORWARD_WARPS),
        output_shapes=[(batch, length, heads, head_dim), (batch, heads, length)],
        output_dtypes=[projection.dtype, mx.float32])
    return out, lse


def cuda_backward(projection: mx.array, turns: mx.array, out: mx.array, lse: mx.array,
                  d_out: mx.array, scale: mx.array, heads: int) -> mx.array:
    """The projection's gradient (B, L, 3 * H * D) from that of the output (B, L, H, D): one
    CUDA kernel (the queries' part, then the keys' and values')."""
    batch, length, width = projection.shape
    head_dim = width // (3 * heads)
    kernel = cuda_kernel("attention_backward",
                         ("projection", "turns", "out", "lse", "d_out", "scale_in"),
                         ("d_projection",), _BACKWARD, _HEADER, _shared_bytes(length, head_dim))
    return kernel(inputs=[projection, turns, out, lse, d_out.astype(projection.dtype), scale],
                  template=[("H", heads), ("D", head_dim), ("WARPS", _BACKWARD_WARPS)],
                  **_launch(batch * heads, _BACKWARD_WARPS), output_shapes=[projection.shape],
                  output_dtypes=[projection.dtype])[0]


def make_attention(forward: Forward, backward: Backward
                   ) -> Callable[[mx.array, int, float, float], mx.array]:
    """``attention(projection (B, L, 3 * H * D), heads, base, scale) -> (B, L, H * D)``:
    causal softmax attention of the projection's queries, keys and values (the first two
    turned by RoPE of ``base``), differentiable in the projection, from a ``forward`` and
    ``backward`` with the kernels' contracts."""

    @functools.cache
    def attend_for(heads: int) -> Callable[[mx.array, mx.array, mx.array],
                                           tuple[mx.array, mx.array]]:
        @mx.custom_function
        def attend(projection: mx.array, turns: mx.array, scale: mx.array
                   ) -> tuple[mx.array, mx.array]:
            return forward(projection, turns, scale, heads)

        @attend.vjp
        def attend_vjp(primals: tuple[mx.array, mx.array, mx.array],
                       cotangents: tuple[mx.array, mx.array],
                       outputs: tuple[mx.array, mx.array]) -> tuple[mx.array, ...]:
            projection, turns, scale = primals
            out, lse = outputs
            d_projection = backward(projection, turns, out, lse, cotangents[0], scale, heads)
            return d_projection, mx.zeros_like(turns), mx.zeros_like(scale)

        return attend

    def attention(projection: mx.array, heads: int, base: float, scale: float) -> mx.array:
        batch, length, width = projection.shape
        turns = rope_turns(length, width // (3 * heads), base)
        out, _ = attend_for(heads)(projection, turns, mx.array([scale], mx.float32))
        return out.reshape(batch, length, width // 3)

    return attention


#: Causal attention from the projection with the CUDA kernels.
flash_attention = make_attention(cuda_forward, cuda_backward)


def sdpa_attention(q: mx.array, k: mx.array, v: mx.array, scale: float,
                   mask: str | None = "causal") -> mx.array:
    """Attention by ``mx.fast.scaled_dot_product_attention`` (the path of CPUs, Metal, float32
    and decoding with a cache), in the output projection's layout (B, L, H * D)."""
    batch, heads, length, head_dim = q.shape
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    return out.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
