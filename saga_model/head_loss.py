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

from .cuda import cuda_kernel, kernels_run_here, launch

LossesAndGradient = Callable[[mx.array, mx.array], tuple[mx.array, mx.array]]

#: Threads that share one row of logits; each keeps its slice of the row in registers.
_THREADS = 256
#: Logits that one thread loads and stores at once (16 bytes of bfloat16).
_CHUNK = 8

_HEADER = """
// The block's maximum (is_max) or sum of x, in every thread.
__device__ inline float block_reduce(float x, float* scratch, bool is_max) {
  x = is_max ? warp_max(x) : warp_sum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < blockDim.x / 32 ? scratch[lane] : (is_max ? __int_as_float(0xff800000) : 0.0f);
  x = is_max ? warp_max(x) : warp_sum(x);
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
  const bool aligned = aligned16(in) && aligned16(out);
  float values[PER_THREAD][8];
  float top = __int_as_float(0xff800000);  // -infinity
  #pragma unroll
  for (int p = 0; p < PER_THREAD; ++p) {
    const int chunk = tid + p * THREADS;
    if (chunk < CHUNKS) {
      load8(in + chunk * 8, values[p], aligned);
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
      store8(out + chunk * 8, g, aligned);
    }
  }
"""

def fused_head_loss_available(dtype: mx.Dtype, vocab_size: int) -> bool:
    """Whether :data:`head_loss` runs here: on a CUDA GPU, for bfloat16 or float32 logits and a
    vocabulary that is a multiple of 8 (the kernel's 16-byte loads)."""
    return kernels_run_here(dtype) and vocab_size % _CHUNK == 0


def cuda_losses_and_gradient(logits: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
    """Cross-entropy (float32, nats) of each row of ``logits`` (N, V) against ``targets`` (N,)
    and the gradient of their sum, ``softmax(logits) - onehot(targets)`` in the logits' dtype:
    one CUDA kernel, one read of the logits. An out-of-range target gives a NaN loss."""
    rows, vocab = logits.shape
    kernel = cuda_kernel("head_loss", ("logits", "targets"), ("losses", "grad"), _SOURCE,
                         _HEADER)
    losses, grad = kernel(
        inputs=[logits, targets.astype(mx.int32)],
        template=[("T", logits.dtype), ("V", vocab), ("THREADS", _THREADS)],
        **launch(rows, _THREADS),
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
