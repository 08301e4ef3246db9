"""The training loss from the last hidden states, the logits' gradient made in the forward pass.

The loss is the summed next-token cross-entropy of the logits ``z = h W^T``. Autodiff of
``nn.losses.cross_entropy`` reads the (positions x 8,000) logits twice after the head wrote
them (once for the loss, once for their gradient) and writes the gradient: at batch 256 on a
GPU those logits are 2.1 GB in bfloat16, and the two passes took 2.8 ms of a 13.3 ms step
(``benchmarks/train_breakdown.py --profile``). Here one CUDA kernel reads each row of logits
once, keeps it in registers, and writes both the row's loss and its gradient
``softmax(z) - onehot(target)``; the backward pass only multiplies that gradient into the two
matrix products (``dh = G W``, ``dW = G^T h``) and scales their small results by the incoming
cotangent. The logits are never read again.

:func:`make_head_loss` builds the differentiable loss around any function with the kernel's
contract (``logits, targets -> losses, gradient``), so the same wrapper is tested on the CPU
with plain MLX operations (``tests/test_head_loss.py``). Training uses :data:`head_loss`
where :func:`fused_head_loss_available` (a CUDA GPU), and autodiff of the plain loss
elsewhere (CPU, Metal).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from .cuda import kernels_run_here

LossesAndGradient = Callable[[mx.array, mx.array], tuple[mx.array, mx.array]]

#: Threads that share one row of logits; each keeps its slice of the row in registers.
_THREADS = 256
#: Logits that one thread loads and stores at once (16 bytes of bfloat16).
_CHUNK = 8

_HEADER = """
__device__ inline void load_chunk(const __nv_bfloat16* p, float* out, bool aligned) {
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

__device__ inline void store_chunk(__nv_bfloat16* p, const float* values, bool aligned) {
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

__device__ inline void load_chunk(const float* p, float* out, bool aligned) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = p[i];
}

__device__ inline void store_chunk(float* p, const float* values, bool aligned) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) p[i] = values[i];
}

// The block's maximum (is_max) or sum of x, in every thread.
__device__ inline float block_reduce(float x, float* scratch, bool is_max) {
  #pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    float other = __shfl_xor_sync(0xffffffff, x, offset);
    x = is_max ? fmaxf(x, other) : x + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < blockDim.x / 32 ? scratch[lane] : (is_max ? __int_as_float(0xff800000) : 0.0f);
  #pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    float other = __shfl_xor_sync(0xffffffff, x, offset);
    x = is_max ? fmaxf(x, other) : x + other;
  }
  __syncthreads();
  return x;
}
"""

_SOURCE = """
  constexpr int CHUNKS = V / 8;
  constexpr int PER_THREAD = (CHUNKS + THREADS - 1) / THREADS;
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const int tid = threadIdx.x;
  const T* in = logits + row * V;
  T* out = grad + row * V;
  const bool aligned = (reinterpret_cast<size_t>(in) % 16 == 0)
                       && (reinterpret_cast<size_t>(out) % 16 == 0);
  float values[PER_THREAD][8];
  float top = __int_as_float(0xff800000);  // -infinity
  #pragma unroll
  for (int p = 0; p < PER_THREAD; ++p) {
    const int chunk = tid + p * THREADS;
    if (chunk < CHUNKS) {
      load_chunk(in + chunk * 8, values[p], aligned);
      #pragma unroll
      for (int i = 0; i < 8; ++i) top = fmaxf(top, values[p][i]);
    }
  }
  top = block_reduce(top, scratch, true);
  float total = 0.0f;
  #pragma unroll
  for (int p = 0; p < PER_THREAD; ++p) {
    if (tid + p * THREADS < CHUNKS) {
      #pragma unroll
      for (int i = 0; i < 8; ++i) {
        values[p][i] = __expf(values[p][i] - top);
        total += values[p][i];
      }
    }
  }
  total = block_reduce(total, scratch, false);
  const int target = targets[row];
  const bool valid = target >= 0 && target < V;
  if (tid == 0) {
    losses[row] = valid ? top + logf(total) - static_cast<float>(in[target])
                         : __int_as_float(0x7fc00000);  // NaN
  }
  const float inverse = 1.0f / total;
  #pragma unroll
  for (int p = 0; p < PER_THREAD; ++p) {
    const int chunk = tid + p * THREADS;
    if (chunk < CHUNKS) {
      float g[8];
      #pragma unroll
      for (int i = 0; i < 8; ++i) {
        g[i] = values[p][i] * inverse - (chunk * 8 + i == target ? 1.0f : 0.0f);
      }
      store_chunk(out + chunk * 8, g, aligned);
    }
  }
"""

_kernel: object | None = None


def fused_head_loss_available(dtype: mx.Dtype, vocab_size: int) -> bool:
    """Whether :data:`head_loss` runs here: on a CUDA GPU, for bfloat16 or float32 logits and a
    vocabulary that is a multiple of 8 (the kernel's 16-byte loads)."""
    return kernels_run_here(dtype) and vocab_size % _CHUNK == 0


def cuda_losses_and_gradient(logits: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
    """Cross-entropy (float32, nats) of each row of ``logits`` (N, V) against ``targets`` (N,)
    and the gradient of their sum, ``softmax(logits) - onehot(targets)`` in the logits' dtype:
    one CUDA kernel, one read of the logits. An out-of-range target gives a NaN loss."""
    global _kernel
    if _kernel is None:
        _kernel = mx.fast.cuda_kernel(
            name="saga_head_loss", input_names=["logits", "targets"],
            output_names=["losses", "grad"], header=_HEADER, source=_SOURCE)
    rows, vocab = logits.shape
    losses, grad = _kernel(  # type: ignore[operator]
        inputs=[logits, targets.astype(mx.int32)],
        template=[("T", logits.dtype), ("V", vocab), ("THREADS", _THREADS)],
        grid=(rows * _THREADS, 1, 1), threadgroup=(_THREADS, 1, 1),
        output_shapes=[(rows,), (rows, vocab)], output_dtypes=[mx.float32, logits.dtype])
    return losses, grad


def make_head_loss(losses_and_gradient: LossesAndGradient
                   ) -> Callable[[mx.array, mx.array, mx.array], mx.array]:
    """The summed cross-entropy of ``hidden @ weight.T`` against ``targets`` as a function of
    ``(hidden (N, d), weight (V, d), targets (N,))``, differentiable in ``hidden`` and
    ``weight``, whose logits' gradient comes from ``losses_and_gradient`` in the forward pass.

    ``hidden`` is in the compute dtype and ``weight`` (float32 master weights) is cast to it,
    as the model's head does; the weight's gradient is float32.
    """

    @mx.custom_function
    def summed_loss(hidden: mx.array, weight: mx.array, targets: mx.array
                    ) -> tuple[mx.array, mx.array]:
        losses, grad = losses_and_gradient(hidden @ weight.astype(hidden.dtype).T, targets)
        return losses.sum(), grad

    @summed_loss.vjp
    def summed_loss_vjp(primals: tuple[mx.array, mx.array, mx.array],
                        cotangents: tuple[mx.array, mx.array],
                        outputs: tuple[mx.array, mx.array]
                        ) -> tuple[mx.array, mx.array, mx.array]:
        hidden, weight, targets = primals
        scale, grad = cotangents[0], outputs[1]
        d_hidden = (grad @ weight.astype(hidden.dtype)) * scale.astype(hidden.dtype)
        d_weight = (grad.T @ hidden).astype(mx.float32) * scale.astype(mx.float32)
        return d_hidden, d_weight.astype(weight.dtype), mx.zeros_like(targets)

    def head_loss(hidden: mx.array, weight: mx.array, targets: mx.array) -> mx.array:
        return summed_loss(hidden, weight, targets)[0]

    return head_loss


#: The summed training loss of ``(hidden, weight, targets)`` with the CUDA kernel.
head_loss = make_head_loss(cuda_losses_and_gradient)
