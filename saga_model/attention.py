"""Causal self-attention on tensor cores for short heads: flash-attention kernels each way.

With heads of 32 dimensions, cuDNN's attention behind ``mx.fast.scaled_dot_product_attention``
ran at about 40 TFLOP/s forward and 30 backward on an H100 (tiles sized for heads of 64 and
more): 2.2 ms of a 10 ms training step at batch 256 with its helper kernels and the output's
transpose. Here each block of 64 queries (four warps of 16) runs through the key blocks at or
before it with bfloat16 ``mma.sync`` products in float32, the softmax kept online (flash
attention, Dao 2022-2023): the scores never reach memory. The next key block is fetched into
registers while the current one is used; both operands of every product come from row-major
tiles through ``ldmatrix`` (transposed where needed). The forward kernel writes the output in
the layout the output projection reads, ``(B, L, H * D)``, and the log-sum-exp of each row;
the backward pass is one kernel for the queries' gradient (which also writes each row's
``sum(dO * O)``) and one for the keys' and values', so no gradient is added atomically:
1.75 ms for the three layers (``benchmarks/train_breakdown.py --profile``).

:func:`make_attention` builds the differentiable function around any pair with the kernels'
contracts, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_attention.py``); the model uses :data:`flash_attention` where
:func:`flash_attention_available` (a CUDA GPU with tensor cores, bfloat16) and ``mx.fast``'s
attention elsewhere (CPUs, Metal, float32, decoding with a cache).
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

#: Queries (and keys) a block: four warps of 16 rows.
_ROWS = 64
_THREADS = 128

#: Pairs of values in global memory, tiles of 64 rows fetched into registers and stashed in
#: shared memory (row-major, eight columns of padding; zeros past the sequence's end), the
#: tensor-core products over them, and reductions over a lane's quad.
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

// A tile: rows first..first+63 of a (length, D) slab whose rows are `stride` apart, in the
// block's registers (16 bytes a chunk; zeros past the end), fetched while the previous tile
// is being used and then stashed in shared memory.
template <int D>
struct Tile {
  static constexpr int CHUNKS = 64 * D / 8, PER_THREAD = (CHUNKS + 127) / 128;
  uint4 chunks[PER_THREAD];
};

template <int D>
__device__ inline void fetch_tile(const bf16* slab, size_t stride, int first, int length,
                                  bool aligned, Tile<D>& tile) {
  #pragma unroll
  for (int n = 0; n < Tile<D>::PER_THREAD; ++n) {
    const int i = threadIdx.x + n * 128;
    const int r = i % 64, c = (i / 64) * 8;  // a warp's lanes on 32 rows: no bank conflicts
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    if (i < Tile<D>::CHUNKS && first + r < length) {
      const bf16* src = slab + (size_t)(first + r) * stride + c;
      if (aligned) {
        raw = *reinterpret_cast<const uint4*>(src);
      } else {
        bf16* values = reinterpret_cast<bf16*>(&raw);
        for (int e = 0; e < 8; ++e) values[e] = src[e];
      }
    }
    tile.chunks[n] = raw;
  }
}

// The tile into `rows` (64 x D+8, row-major: eight columns of padding keep ldmatrix's
// eight rows on distinct banks).
template <int D>
__device__ inline void stash_tile(const Tile<D>& tile, bf16 (*rows)[D + 8]) {
  #pragma unroll
  for (int n = 0; n < Tile<D>::PER_THREAD; ++n) {
    const int i = threadIdx.x + n * 128;
    if (i >= Tile<D>::CHUNKS) break;
    *reinterpret_cast<uint4*>(&rows[i % 64][(i / 64) * 8]) = tile.chunks[n];
  }
}

// One key block's turn: the fetched tiles of K and V into shared memory, then the next block's
// (rows next..next+63, unless next is past `last`) fetched while this one is used.
template <int D>
__device__ inline void next_key_block(const bf16* ks, const bf16* vs, int next, int last,
                                      int length, bool aligned, Tile<D>& k_next,
                                      Tile<D>& v_next, bf16 (*k_rows)[D + 8],
                                      bf16 (*v_rows)[D + 8]) {
  __syncthreads();
  stash_tile<D>(k_next, k_rows);
  stash_tile<D>(v_next, v_rows);
  __syncthreads();
  if (next <= last) {
    fetch_tile<D>(ks, D, next, length, aligned, k_next);
    fetch_tile<D>(vs, D, next, length, aligned, v_next);
  }
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

#: Where each kernel's block and warp are: the sequence, its (batch, head), the slabs of q, k
#: and v (B, H, L, D) and of the output and its gradient (B, L, H, D).
_PLACE = """
  constexpr int KT = D / 16, DT = D / 8;
  const int length = q_shape[2];
  const int blocks = (length + 63) / 64;
  const size_t bh = blockIdx.y, batch = bh / H, head = bh % H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4, g = lane / 4;
  const float scale = scale_in[0], scale2 = scale * 1.4426950408889634f;
  const bf16* qs = q + bh * length * D;
  const bf16* ks = k + bh * length * D;
  const bf16* vs = v + bh * length * D;
  const size_t wide = (size_t)H * D;
"""

#: One block of 64 queries (the last ones first: they have the most keys) against the key
#: blocks at or before it; out (B, L, H, D) and lse (B, H, L). Scores stay unscaled: the
#: running maximum is of them, and one multiply-add scales and shifts each before exp2.
_FORWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out);
  const int qb = blocks - 1 - blockIdx.x;
  const int first = qb * 64 + warp * 16, ra = first + g, rb = ra + 8;
  bf16* outs = out + (batch * length * H + head) * D;
  __shared__ __align__(16) bf16 k_rows[64][D + 8];
  __shared__ __align__(16) bf16 v_rows[64][D + 8];
  uint32_t qa[KT][4];
  load_fragments<D>(qs, D, first, length, aligned, qa);
  Tile<D> k_next, v_next;
  fetch_tile<D>(ks, D, 0, length, aligned, k_next);
  fetch_tile<D>(vs, D, 0, length, aligned, v_next);
  float acc[DT][4] = {};
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  for (int kb = 0; kb <= qb; ++kb) {
    next_key_block<D>(ks, vs, (kb + 1) * 64, qb * 64, length, aligned, k_next, v_next, k_rows,
                      v_rows);
    float s[8][4];
    scores<D>(qa, k_rows, s);
    if (kb == qb) mask_tile<false>(s, kb * 64, ra, rb);
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
    accumulate<D>(acc, pa, v_rows);
  }
  l_a = quad_sum(l_a);
  l_b = quad_sum(l_b);
  store_rows<D>(outs, wide, first, length, aligned, acc, 1.0f / l_a, 1.0f / l_b);
  if (t == 0 && ra < length) lse[bh * length + ra] = m_a * scale2 + log2f(l_a);
  if (t == 0 && rb < length) lse[bh * length + rb] = m_b * scale2 + log2f(l_b);
"""

#: The queries' gradient of one block of 64 queries, and each row's sum(dO * O) (`delta`, for
#: the keys' kernel): dS = P * (dO V^T - delta), dq = scale * dS K.
_QUERIES_BACKWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out)
                       && aligned16(d_out) && aligned16(dq);
  const int qb = blocks - 1 - blockIdx.x;
  const int first = qb * 64 + warp * 16, ra = first + g, rb = ra + 8;
  const bf16* outs = out + (batch * length * H + head) * D;
  const bf16* d_outs = d_out + (batch * length * H + head) * D;
  __shared__ __align__(16) bf16 k_rows[64][D + 8];
  __shared__ __align__(16) bf16 v_rows[64][D + 8];
  Tile<D> k_next, v_next;
  fetch_tile<D>(ks, D, 0, length, aligned, k_next);
  fetch_tile<D>(vs, D, 0, length, aligned, v_next);
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
  for (int kb = 0; kb <= qb; ++kb) {
    next_key_block<D>(ks, vs, (kb + 1) * 64, qb * 64, length, aligned, k_next, v_next, k_rows,
                      v_rows);
    float s[8][4], dp[8][4];
    scores<D>(qa, k_rows, s);
    scores<D>(da, v_rows, dp);
    if (kb == qb) mask_tile<false>(s, kb * 64, ra, rb);
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
    accumulate<D>(acc, dsa, k_rows);
  }
  store_rows<D>(dq + bh * length * D, D, first, length, aligned, acc, scale, scale);
"""

#: The keys' and values' gradients of one block of 64 keys (the first ones first) against the
#: query blocks at or after it: dv = P^T dO, dk = scale * dS^T Q.
_KEYS_BACKWARD = _PLACE + """
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(d_out)
                       && aligned16(dk) && aligned16(dv);
  const int kb = blockIdx.x;
  const int first = kb * 64 + warp * 16, ka_row = first + g, kb_row = ka_row + 8;
  const bf16* d_outs = d_out + (batch * length * H + head) * D;
  __shared__ __align__(16) bf16 q_rows[64][D + 8];
  __shared__ __align__(16) bf16 d_rows[64][D + 8];
  __shared__ float lse_s[64], delta_s[64];
  Tile<D> q_next, d_next;
  fetch_tile<D>(qs, D, kb * 64, length, aligned, q_next);
  fetch_tile<D>(d_outs, wide, kb * 64, length, aligned, d_next);
  float lse_next = 0.0f, delta_next = 0.0f;
  if (threadIdx.x < 64 && kb * 64 + threadIdx.x < length) {
    lse_next = lse[bh * length + kb * 64 + threadIdx.x];
    delta_next = delta[bh * length + kb * 64 + threadIdx.x];
  }
  uint32_t ka[KT][4], va[KT][4];
  load_fragments<D>(ks, D, first, length, aligned, ka);
  load_fragments<D>(vs, D, first, length, aligned, va);
  float dk_acc[DT][4] = {}, dv_acc[DT][4] = {};
  for (int qb = kb; qb < blocks; ++qb) {
    __syncthreads();
    stash_tile<D>(q_next, q_rows);
    stash_tile<D>(d_next, d_rows);
    if (threadIdx.x < 64) {
      lse_s[threadIdx.x] = lse_next;
      delta_s[threadIdx.x] = delta_next;
    }
    __syncthreads();
    if (qb + 1 < blocks) {
      fetch_tile<D>(qs, D, (qb + 1) * 64, length, aligned, q_next);
      fetch_tile<D>(d_outs, wide, (qb + 1) * 64, length, aligned, d_next);
      const int row = (qb + 1) * 64 + threadIdx.x;
      if (threadIdx.x < 64 && row < length) {
        lse_next = lse[bh * length + row];
        delta_next = delta[bh * length + row];
      }
    }
    float s[8][4], dp[8][4];
    scores<D>(ka, q_rows, s);
    scores<D>(va, d_rows, dp);
    // Queries before the keys, or past the end (whose lse and delta are not there).
    if (qb == kb) mask_tile<true>(s, qb * 64, ka_row, kb_row);
    if (qb == blocks - 1) mask_tile<false>(s, qb * 64, length - 1, length - 1);
    uint32_t pa[4][4];
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
      #pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int column = j * 8 + 2 * t + (e & 1);
        const float p = exp2_fast(fmaf(s[j][e], scale2, -lse_s[column]));
        s[j][e] = p;
        dp[j][e] = p * (dp[j][e] - delta_s[column]);
      }
    }
    as_fragments(s, pa);
    accumulate<D>(dv_acc, pa, d_rows);
    as_fragments(dp, pa);
    accumulate<D>(dk_acc, pa, q_rows);
  }
  store_rows<D>(dk + bh * length * D, D, first, length, aligned, dk_acc, scale, scale);
  store_rows<D>(dv + bh * length * D, D, first, length, aligned, dv_acc, 1.0f, 1.0f);
"""


def flash_attention_available(dtype: mx.Dtype, head_dim: int) -> bool:
    """Whether :data:`flash_attention` runs here: on a CUDA GPU with bfloat16 tensor cores,
    for bfloat16 and heads of 16, 32 or 64 dimensions."""
    return tensor_cores_run_here(dtype) and head_dim in (16, 32, 64)


def _launch(length: int, heads: int) -> dict[str, tuple[int, int, int]]:
    """One block of 128 threads per 64 rows, for each (batch, head)."""
    return launch(-(-length // _ROWS), _THREADS, heads)


def cuda_forward(q: mx.array, k: mx.array, v: mx.array, scale: mx.array
                 ) -> tuple[mx.array, mx.array]:
    """Causal attention's output (B, L, H, D) and each row's log-sum-exp in base two
    (B, H, L), from q, k, v (B, H, L, D): one CUDA kernel."""
    batch, heads, length, head_dim = q.shape
    kernel = cuda_kernel("attention_forward", ("q", "k", "v", "scale_in"), ("out", "lse"),
                         _FORWARD, _HEADER)
    out, lse = kernel(
        inputs=[q, k, v, scale], template=[("H", heads), ("D", head_dim)],
        **_launch(length, batch * heads),
        output_shapes=[(batch, length, heads, head_dim), (batch, heads, length)],
        output_dtypes=[q.dtype, mx.float32])
    return out, lse


def cuda_backward(q: mx.array, k: mx.array, v: mx.array, out: mx.array, lse: mx.array,
                  d_out: mx.array, scale: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The gradients of q, k and v (B, H, L, D) from that of the output (B, L, H, D): two CUDA
    kernels, the queries' first (it also writes the rows' ``sum(dO * O)``)."""
    batch, heads, length, head_dim = q.shape
    template = [("H", heads), ("D", head_dim)]
    shape = (batch, heads, length, head_dim)
    d_out = d_out.astype(q.dtype)
    queries = cuda_kernel("attention_queries_backward",
                          ("q", "k", "v", "out", "d_out", "lse", "scale_in"), ("dq", "delta"),
                          _QUERIES_BACKWARD, _HEADER)
    dq, delta = queries(inputs=[q, k, v, out, d_out, lse, scale], template=template,
                        **_launch(length, batch * heads),
                        output_shapes=[shape, (batch, heads, length)],
                        output_dtypes=[q.dtype, mx.float32])
    keys = cuda_kernel("attention_keys_backward",
                       ("q", "k", "v", "d_out", "lse", "delta", "scale_in"), ("dk", "dv"),
                       _KEYS_BACKWARD, _HEADER)
    dk, dv = keys(inputs=[q, k, v, d_out, lse, delta, scale], template=template,
                  **_launch(length, batch * heads), output_shapes=[shape, shape],
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
