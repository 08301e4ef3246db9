"""Gradient clipping and AdamW for every parameter array in two CUDA kernels.

``optim.clip_grad_norm`` squares and sums each gradient array in a reduction of its own and
``optim.AdamW`` updates each array in element-wise kernels of its own: for the seed model's
21 arrays (2.5M float32 values, about 70 MB of traffic a step, 0.02 ms at an H100's
bandwidth) that is dozens of tiny launch-bound kernels, about 0.5 ms of a 9.6 ms training
step at batch 256 (``benchmarks/train_breakdown.py``: "no optimizer" saved 0.32 ms, the
clipping's 24 reductions took 0.18 ms). Here one kernel sums the squares of every gradient
(each block some chunks of the arrays, one partial sum per block) and one updates every
parameter, m and v: each of its blocks first adds up the partial sums into the norm and the
clipping factor, then updates chunks of any array. The kernels are generated for the arrays'
sizes; a chunk (1,024 values of one array) finds its array, and the array its AdamW
constants, through an if-chain over the chunks' ranges.

The update is ``optim.clip_grad_norm`` followed by the ``optim.AdamW`` (no bias correction)
of each array's group, computed as MLX computes them in float32; MLX's own ``AdamW`` object
evaluates the learning-rate schedule and advances its step counter, and the moments are
kept in the optimizer's state where MLX keeps them, so checkpoints do not change.
:func:`make_clip_and_update` builds the step around any function with the kernels' contract,
so the bookkeeping is tested on the CPU with MLX's own AdamW arithmetic
(``tests/test_fused_optimizer.py``); training uses :data:`fused_clip_and_update` where
:func:`fused_adamw_available` (a CUDA GPU) and MLX's optimizers elsewhere (CPU, Metal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Template
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map_with_path, tree_unflatten

from .cuda import block_count, cuda_kernel, kernels_run_here, launch

_THREADS = 256
#: Values of one array a thread takes per chunk, ``_THREADS`` apart (coalesced).
_PER_THREAD = 4
_CHUNK = _THREADS * _PER_THREAD
#: At most this many blocks per kernel (each then takes several chunks); the update's blocks
#: each add up the square sums' partial sums, one per block.
_MAX_BLOCKS = 1024


@dataclass(frozen=True)
class Group:
    """One ``optim.AdamW`` of the optimizer: this step's learning rate (a float32 scalar) and
    its constants."""

    learning_rate: mx.array
    beta1: float
    beta2: float
    eps: float
    weight_decay: float


@dataclass(frozen=True)
class Slot:
    """One parameter array with its gradient, its AdamW moments and its group (an index into
    the groups)."""

    gradient: mx.array
    parameter: mx.array
    m: mx.array
    v: mx.array
    group: int


#: A parameter array's new value, m and v.
Updated = tuple[mx.array, mx.array, mx.array]
#: ``(slots, groups, max_norm) -> (each slot's new parameter, m and v; the gradients' norm)``:
#: ``optim.clip_grad_norm`` of all the gradients, then each slot's group's AdamW.
Kernels = Callable[[Sequence[Slot], Sequence[Group], float], tuple[list[Updated], mx.array]]
#: ``(model, optimizer, gradients, max_norm) -> the gradients' norm``, updating both.
ClipAndUpdate = Callable[[nn.Module, optim.Optimizer, dict[str, Any], float], mx.array]

_SQUARE_SUMS = """
  constexpr int WARPS = THREADS / 32;
  __shared__ float warp_sums[WARPS];
  float sum = 0.0f;
  for (int chunk = blockIdx.x; chunk < CHUNKS; chunk += gridDim.x) {
    const float* g;
    int first;
    size_t size;
$choose
    const size_t start = (size_t)(chunk - first) * THREADS * PER_THREAD + threadIdx.x;
    #pragma unroll
    for (int j = 0; j < PER_THREAD; ++j) {
      const size_t i = start + j * THREADS;
      if (i < size) sum += g[i] * g[i];
    }
  }
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < WARPS; ++w) total += warp_sums[w];
    partials[blockIdx.x] = total;
  }
"""

_HEADER = """
struct AdamW {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
};
"""

#: AdamW as ``optim.AdamW.apply_single`` computes it: the weight decay first, as
#: ``p * (1 - lr * weight_decay)``, then ``p - lr * m / (sqrt(v) + eps)``.
_UPDATE = """
  constexpr int WARPS = THREADS / 32;
  __shared__ float warp_sums[WARPS];
  // The norm from the square sums' partial sums, which every block adds up alike.
  float sum = 0.0f;
  for (int i = threadIdx.x; i < PARTIALS; i += THREADS) sum += partials[i];
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  float total = 0.0f;
  #pragma unroll
  for (int w = 0; w < WARPS; ++w) total += warp_sums[w];
  const float norm = sqrtf(total);
  if (blockIdx.x == 0 && threadIdx.x == 0) grad_norm[0] = norm;
  // optim.clip_grad_norm's factor (mx.minimum keeps a NaN).
  const float ratio = $max_norm / (norm + 1e-6f);
  const float scale = ratio > 1.0f ? 1.0f : ratio;
$groups
  for (int chunk = blockIdx.x; chunk < CHUNKS; chunk += gridDim.x) {
    const float *g, *p, *m, *v;
    float *new_p, *new_m, *new_v;
    int first;
    size_t size;
    float lr;
    AdamW adamw;
$choose
    const float decay = 1.0f - lr * adamw.weight_decay;
    const size_t start = (size_t)(chunk - first) * THREADS * PER_THREAD + threadIdx.x;
    float gs[PER_THREAD], ps[PER_THREAD], ms[PER_THREAD], vs[PER_THREAD];
    #pragma unroll
    for (int j = 0; j < PER_THREAD; ++j) {
      const size_t i = start + j * THREADS;
      if (i < size) {
        gs[j] = g[i];
        ps[j] = p[i];
        ms[j] = m[i];
        vs[j] = v[i];
      }
    }
    #pragma unroll
    for (int j = 0; j < PER_THREAD; ++j) {
      const size_t i = start + j * THREADS;
      if (i < size) {
        const float grad = gs[j] * scale;
        const float m1 = adamw.beta1 * ms[j] + adamw.one_minus_beta1 * grad;
        const float v1 = adamw.beta2 * vs[j] + adamw.one_minus_beta2 * (grad * grad);
        new_m[i] = m1;
        new_v[i] = v1;
        new_p[i] = ps[j] * decay - lr * m1 / (sqrtf(v1) + adamw.eps);
      }
    }
  }
"""


def _float(value: float) -> str:
    """``value`` rounded to float32, as C++ of its exact bits (infinity included)."""
    bits = int(np.array(value, np.float32).view(np.uint32))
    return f"__int_as_float(0x{bits:08x}) /* {value!r} */"


def _chunks(size: int) -> int:
    return -(-size // _CHUNK)


def _choose_array(sizes: Sequence[int], assign: Callable[[int], str]) -> str:
    """C++ that finds the array of ``chunk``: sets ``first`` (the array's first chunk) and
    ``size``, and runs ``assign(index)``."""
    lines, first = [], 0
    for index, size in enumerate(sizes):
        end = first + _chunks(size)
        test = f"if (chunk < {end}) " if index < len(sizes) - 1 else ""
        lines.append(f"    {'else ' if index else ''}{test}"
                     f"{{ first = {first}; size = {size}; {assign(index)} }}")
        first = end
    return "\n".join(lines)


def _names(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{index}" for index in range(count))


def cuda_adamw(slots: Sequence[Slot], groups: Sequence[Group], max_norm: float
               ) -> tuple[list[Updated], mx.array]:
    """``optim.clip_grad_norm`` of every slot's float32 gradient, then its group's AdamW: one
    CUDA kernel for the squares' partial sums, one for the norm and every update."""
    sizes = [slot.gradient.size for slot in slots]
    count = len(slots)
    chunks = sum(_chunks(size) for size in sizes)
    blocks = block_count(chunks, 1, _MAX_BLOCKS)
    square_sums = cuda_kernel(
        "adamw_square_sums", _names("g", count), ("partials",),
        Template(_SQUARE_SUMS).substitute(choose=_choose_array(sizes, lambda k: f"g = g{k};")))
    (partials,) = square_sums(
        inputs=[slot.gradient for slot in slots],
        template=[("THREADS", _THREADS), ("PER_THREAD", _PER_THREAD), ("CHUNKS", chunks)],
        **launch(blocks, _THREADS), output_shapes=[(blocks,)], output_dtypes=[mx.float32])

    def assign(k: int) -> str:
        group = slots[k].group
        return (f"g = g{k}; p = p{k}; m = m{k}; v = v{k}; new_p = new_p{k}; new_m = new_m{k}; "
                f"new_v = new_v{k}; lr = rate{group}[0]; adamw = group{group};")

    constants = "\n".join(
        f"  const AdamW group{index} = {{{_float(group.beta1)}, {_float(1 - group.beta1)}, "
        f"{_float(group.beta2)}, {_float(1 - group.beta2)}, {_float(group.eps)}, "
        f"{_float(group.weight_decay)}}};" for index, group in enumerate(groups))
    update = cuda_kernel(
        "adamw_update",
        (*_names("g", count), *_names("p", count), *_names("m", count), *_names("v", count),
         *_names("rate", len(groups)), "partials"),
        (*_names("new_p", count), *_names("new_m", count), *_names("new_v", count),
         "grad_norm"),
        Template(_UPDATE).substitute(max_norm=_float(max_norm), groups=constants,
                                     choose=_choose_array(sizes, assign)),
        _HEADER)
    outputs = update(
        inputs=[*(slot.gradient for slot in slots), *(slot.parameter for slot in slots),
                *(slot.m for slot in slots), *(slot.v for slot in slots),
                *(group.learning_rate for group in groups), partials],
        template=[("THREADS", _THREADS), ("PER_THREAD", _PER_THREAD), ("CHUNKS", chunks),
                  ("PARTIALS", blocks)],
        **launch(blocks, _THREADS),
        output_shapes=[slot.parameter.shape for slot in slots] * 3 + [()],
        output_dtypes=[mx.float32] * (3 * count + 1))
    updated = zip(outputs[:count], outputs[count:2 * count], outputs[2 * count:3 * count],
                  strict=True)
    return list(updated), outputs[-1]


def _optimizers(optimizer: optim.Optimizer) -> list[optim.Optimizer]:
    """The optimizers ``optimizer`` applies: a ``MultiOptimizer``'s, or itself."""
    if isinstance(optimizer, optim.MultiOptimizer):
        return list(optimizer.optimizers)
    return [optimizer]


def fused_adamw_available(optimizer: optim.Optimizer, gradients: dict[str, Any]) -> bool:
    """Whether :data:`fused_clip_and_update` runs here: on a CUDA GPU, for float32 gradients
    and an ``optim.AdamW`` without bias correction or a ``MultiOptimizer`` of them."""
    return (kernels_run_here(mx.float32)
            and all(type(adamw) is optim.AdamW and not adamw.bias_correction
                    for adamw in _optimizers(optimizer))
            and all(gradient.dtype == mx.float32 for _, gradient in tree_flatten(gradients)))


def _shares(optimizer: optim.Optimizer, gradients: dict[str, Any]
            ) -> list[tuple[optim.Optimizer, dict[str, Any]]]:
    """Each of the optimizer's AdamWs with its share of the gradients, split as
    ``MultiOptimizer`` splits them (the first filter that takes a gradient)."""
    if not isinstance(optimizer, optim.MultiOptimizer):
        return [(optimizer, gradients)]
    shares: list[list[tuple[str, mx.array]]] = [[] for _ in optimizer.optimizers]
    for path, gradient in tree_flatten(gradients):
        taker = next(index for index, takes in enumerate(optimizer.filters)
                     if takes(path, gradient))
        shares[taker].append((path, gradient))
    return [(adamw, tree_unflatten(share) if share else {})
            for adamw, share in zip(optimizer.optimizers, shares, strict=True)]


def _leaves(tree: dict[str, Any], *rest: Any) -> list[tuple[Any, ...]]:
    """``(path, leaf, the node at the same place in each of rest)`` for each leaf of tree."""
    found: list[tuple[Any, ...]] = []
    tree_map_with_path(lambda path, *nodes: found.append((path, *nodes)), tree, *rest)
    return found


def make_clip_and_update(kernels: Kernels) -> ClipAndUpdate:
    """``clip_and_update(model, optimizer, gradients, max_norm)``: what
    ``optim.clip_grad_norm(gradients, max_norm)`` and then ``optimizer.update(model, clipped)``
    do to the model and the optimizer's state, for an optimizer that
    :func:`fused_adamw_available` accepts, with the arithmetic of ``kernels``; returns the
    gradients' norm."""

    def clip_and_update(model: nn.Module, optimizer: optim.Optimizer,
                        gradients: dict[str, Any], max_norm: float) -> mx.array:
        slots: list[Slot] = []
        groups: list[Group] = []
        places: list[tuple[str, dict[str, mx.array]]] = []
        for adamw, share in _shares(optimizer, gradients):
            adamw.init(share)
            # The schedule and step counter, as MLX's update advances them (no arrays given).
            adamw.apply_gradients({}, {})
            for path, gradient, parameter, state in _leaves(share, model, adamw.state):
                slots.append(Slot(gradient, parameter, state["m"], state["v"], len(groups)))
                places.append((path, state))
            beta1, beta2 = adamw.betas
            groups.append(Group(adamw.learning_rate.astype(mx.float32), beta1, beta2,
                                adamw.eps, adamw.weight_decay))
        updated, norm = kernels(slots, groups, max_norm)
        parameters = {}
        for (path, state), (parameter, m, v) in zip(places, updated, strict=True):
            state["m"], state["v"] = m, v
            parameters[path] = parameter
        model.update(tree_map_with_path(lambda path, _: parameters[path], gradients))
        return norm

    return clip_and_update


#: Gradient clipping and AdamW with the CUDA kernels.
fused_clip_and_update = make_clip_and_update(cuda_adamw)
