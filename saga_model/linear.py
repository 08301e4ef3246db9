"""The linear layers' weight gradient on tensor cores, straight into float32.

A linear layer ``y = x W^T`` over all B * L positions has a weight gradient ``dY^T X``: a small
(out x in) matrix summed over 131,072 rows at batch 256. cuBLAS runs these twelve products of
the model's layers as split-K kernels with 64 x 64 tiles at about 70-80 TFLOP/s (1.6-1.8 ms of
a 10 ms step on an H100, ``benchmarks/train_breakdown.py --profile``), and autodiff then widens
each bfloat16 gradient to the float32 master weights. Here each block of eight warps sums a
128 x 128 tile of the gradient over its own stretch of rows with bfloat16 ``mma.sync``
products in float32: both operands come from row-major tiles in shared memory, filled by
``cp.async`` one tile ahead and read transposed by ``ldmatrix``; the blocks' float32 tiles are
added into the gradient (zeros to start) with vector reductions.

The input's gradient stays a cuBLAS product (``dY W``: long and thin, as fast as memory).
:func:`make_linear` builds the differentiable layer around any weight-gradient function with
the kernel's contract, so the wrapper is tested on the CPU with plain MLX operations
(``tests/test_linear.py``); the model uses :data:`fused_linear` where
:func:`fused_linear_available` and ``x @ W^T`` (autodiff) elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from .cuda import TENSOR_CORES, cuda_kernel, tensor_cores_run_here

#: ``(d_out (N, O), x (N, I)) -> d_weight (O, I)`` in float32: ``d_out^T x``.
WeightGradient = Callable[[mx.array, mx.array], mx.array]

#: Gradient tiles are TILE x TILE; rows go through shared memory STEP at a time.
_TILE = 128
_THREADS = 256
#: Blocks to aim for: two on each of an H100's 132 multiprocessors.
_TARGET_BLOCKS = 264

#: Eight warps, 4 (output rows) x 2 (input columns), each 32 x 64 of the tile: two m16 by
#: eight n8 fragments. Rows STEP at a time, double-buffered; ROWS rows a block.
_WEIGHT_GRADIENT = """
  constexpr int STEP = 32, PAD = 136, I_TILES = I / 128;
  __shared__ __align__(16) bf16 dy_s[2][STEP][PAD];
  __shared__ __align__(16) bf16 x_s[2][STEP][PAD];
  const int n = d_out_shape[0];
  const int o0 = (blockIdx.y / I_TILES) * 128, i0 = (blockIdx.y % I_TILES) * 128;
  const int first = blockIdx.x * ROWS, last = min(n, first + ROWS);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4, g = lane / 4;
  const int wo = (warp / 2) * 32, wi = (warp % 2) * 64;
  const bool aligned = aligned16(d_out) && aligned16(x);
  // One step's tiles: 32 rows x 128 columns of each operand, 16 bytes a thread each.
  auto fetch = [&](int row0, int buffer) {
    #pragma unroll
    for (int n_chunk = 0; n_chunk < 2; ++n_chunk) {
      const int i = threadIdx.x + n_chunk * 256, r = i / 16, c = (i % 16) * 8;
      const int row = row0 + r;
      const bool valid = row < last;
      const bf16* dy_src = d_out + (size_t)(valid ? row : first) * O + o0 + c;
      const bf16* x_src = x + (size_t)(valid ? row : first) * I + i0 + c;
      if (aligned) {
        cp_async16(&dy_s[buffer][r][c], dy_src, valid);
        cp_async16(&x_s[buffer][r][c], x_src, valid);
      } else {
        for (int e = 0; e < 8; ++e) {
          dy_s[buffer][r][c + e] = valid ? dy_src[e] : __float2bfloat16(0.0f);
          x_s[buffer][r][c + e] = valid ? x_src[e] : __float2bfloat16(0.0f);
        }
      }
    }
    cp_async_commit();
  };
  float acc[2][8][4] = {};
  const int steps = (last - first + STEP - 1) / STEP;
  if (steps > 0) fetch(first, 0);
  for (int step = 0; step < steps; ++step) {
    const int buffer = step % 2;
    if (step + 1 < steps) {
      fetch(first + (step + 1) * STEP, 1 - buffer);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    #pragma unroll
    for (int k0 = 0; k0 < STEP; k0 += 16) {
      uint32_t a[2][4], b[4][4];
      #pragma unroll
      for (int m = 0; m < 2; ++m) {
        // a = dY^T: tiles (rows k0.., columns o), (k0.., o+8), (k0+8.., o), (k0+8.., o+8).
        const int row = k0 + lane % 8 + (lane / 16) * 8, col = wo + m * 16 + ((lane / 8) % 2) * 8;
        ldmatrix_x4_trans(a[m], &dy_s[buffer][row][col]);
      }
      #pragma unroll
      for (int p = 0; p < 4; ++p) {
        // b of the column tiles i and i+8: (k0.., i), (k0+8.., i), (k0.., i+8), (k0+8.., i+8).
        const int row = k0 + lane % 8 + ((lane / 8) % 2) * 8, col = wi + p * 16 + (lane / 16) * 8;
        ldmatrix_x4_trans(b[p], &x_s[buffer][row][col]);
      }
      #pragma unroll
      for (int m = 0; m < 2; ++m) {
        #pragma unroll
        for (int j = 0; j < 8; ++j) {
          mma16816(acc[m][j], a[m], b[j / 2][(j % 2) * 2], b[j / 2][(j % 2) * 2 + 1]);
        }
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int m = 0; m < 2; ++m) {
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int row = o0 + wo + m * 16 + g, col = i0 + wi + j * 8 + 2 * t;
      red_add2(d_weight + (size_t)row * I + col, acc[m][j][0], acc[m][j][1]);
      red_add2(d_weight + (size_t)(row + 8) * I + col, acc[m][j][2], acc[m][j][3]);
    }
  }
"""


def fused_linear_available(dtype: mx.Dtype, in_dims: int, out_dims: int) -> bool:
    """Whether :data:`fused_linear` runs here: on a CUDA GPU with bfloat16 tensor cores, for
    bfloat16 and both sides multiples of 128."""
    return tensor_cores_run_here(dtype) and in_dims % _TILE == 0 and out_dims % _TILE == 0


def cuda_weight_gradient(d_out: mx.array, x: mx.array) -> mx.array:
    """``d_out^T x`` (O, I) in float32 from d_out (N, O) and x (N, I) in bfloat16: one CUDA
    kernel, about two blocks per multiprocessor."""
    rows, out_dims = d_out.shape
    in_dims = x.shape[1]
    tiles = (out_dims // _TILE) * (in_dims // _TILE)
    chunks = max(1, -(-_TARGET_BLOCKS // tiles))
    per_block = max(32, -(-rows // chunks // 32) * 32)
    kernel = cuda_kernel("weight_gradient", ("d_out", "x"), ("d_weight",), _WEIGHT_GRADIENT,
                         TENSOR_CORES)
    (d_weight,) = kernel(
        inputs=[d_out, x], template=[("O", out_dims), ("I", in_dims), ("ROWS", per_block)],
        grid=(-(-rows // per_block) * _THREADS, tiles, 1), threadgroup=(_THREADS, 1, 1),
        output_shapes=[(out_dims, in_dims)], output_dtypes=[mx.float32], init_value=0)
    return d_weight


def make_linear(weight_gradient: WeightGradient) -> Callable[[mx.array, mx.array], mx.array]:
    """``linear(x (..., I), weight (O, I) float32) -> x @ weight^T`` in x's dtype,
    differentiable in both, the weight's gradient in float32 from ``weight_gradient``."""

    @mx.custom_function
    def linear(x: mx.array, weight: mx.array) -> mx.array:
        return x @ weight.astype(x.dtype).T

    @linear.vjp
    def linear_vjp(primals: tuple[mx.array, mx.array], cotangent: mx.array, _output: mx.array
                   ) -> tuple[mx.array, mx.array]:
        x, weight = primals
        d_out = cotangent.astype(x.dtype)
        d_x = d_out @ weight.astype(x.dtype)
        d_weight = weight_gradient(d_out.reshape(-1, weight.shape[0]),
                                   x.reshape(-1, weight.shape[1]))
        return d_x, d_weight.astype(weight.dtype)

    return linear


#: The linear layer with the CUDA weight-gradient kernel.
fused_linear = make_linear(cuda_weight_gradient)
