"""The head and loss with a hand-written gradient: measured alternatives to autodiff.

The training step (``saga_model.train.loss_terms``) lets autodiff differentiate
``nn.losses.cross_entropy`` of the logits ``z = h W^T``; on MLX 0.32 that already runs as two
fused kernels, ``cross_entropy`` and ``cross_entropy_vjp`` (``benchmarks/train_breakdown.py
--profile``). This module holds what was tried against it for issue 17, so that
``train_breakdown.py`` can time it in the same run:

* :func:`head_losses` with ``chunk_rows=None``: the gradient of the logits formed by hand in
  one element-wise pass, ``softmax(z) - onehot(t)``, from the log-normaliser the forward pass
  already has (``loss + z[t]``);
* with ``chunk_rows``: the logits are not kept between the forward and the backward pass but
  recomputed ``chunk_rows`` positions at a time, as in "Cut Your Losses in Large-Vocabulary
  Language Models" (Wijmans et al., 2024), so no more than one chunk of logits exists at once.

Both compute the same losses and gradients as autodiff (``tests/test_loss_variants.py``) and
both are portable MLX (CPU, Metal, CUDA); on an H200 both are slower than autodiff
(docs/performance.md), so training does not use them.
"""

from __future__ import annotations

from collections.abc import Callable

import saga_model  # isort: skip  # noqa: F401  (loads OpenBLAS for MLX: import before mlx)
import mlx.core as mx

from saga_model.train import token_losses


def fused_kernel_available() -> bool:
    """Whether ``mx.fast.cross_entropy`` runs as a fused kernel (with float32 accumulation)
    here: on a GPU with an MLX that has it. Elsewhere the loss is composed of plain ops."""
    return (hasattr(mx.fast, "cross_entropy")
            and mx.default_device().type == mx.DeviceType.gpu)


def plain_head_losses(hidden: mx.array, weight: mx.array, targets: mx.array) -> mx.array:
    """Reference: the training loss (autodiff's gradient) of the logits ``hidden @ weight.T``.

    ``hidden`` (..., d) is in the compute dtype; ``weight`` (vocab, d) is cast to it.
    """
    return token_losses(hidden @ weight.astype(hidden.dtype).T, targets)


def _cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """``logsumexp(logits) - logits[target]`` per row, accumulated in float32.

    The backward pass takes the log-normaliser back out of this loss, so it must be precise:
    without the fused kernel the reduction runs on a float32 copy of the logits.
    """
    if fused_kernel_available():
        return mx.fast.cross_entropy(logits, targets)
    target_logits = mx.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    wide = logits.astype(mx.float32)
    return mx.logsumexp(wide, axis=-1) - target_logits.astype(mx.float32)


def _logits_grad(logits: mx.array, targets: mx.array, losses: mx.array,
                 cotangent: mx.array) -> mx.array:
    """``(softmax(logits) - onehot(targets)) * cotangent`` per row, in the logits' dtype.

    The log-normaliser is ``loss + logits[target]``, so the backward pass needs no second
    reduction over the vocabulary; everything else is one element-wise expression, which
    ``mx.compile`` fuses into a single pass over the logits.
    """
    target_logits = mx.take_along_axis(logits, targets[:, None], axis=-1)
    log_norm = losses[:, None] + target_logits.astype(mx.float32)
    onehot = mx.arange(logits.shape[-1])[None, :] == targets[:, None]
    grad = mx.exp(logits.astype(mx.float32) - log_norm) - onehot.astype(mx.float32)
    return (grad * cotangent[:, None]).astype(logits.dtype)


def _row_chunks(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive row ranges of at most ``chunk_rows`` rows."""
    return [(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]


@mx.custom_function
def fused_cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Float32 cross-entropy of (N, vocab) logits, whose gradient is one fused pass."""
    return _cross_entropy(logits, targets)


@fused_cross_entropy.vjp
def _fused_cross_entropy_vjp(primals: tuple[mx.array, mx.array], cotangent: mx.array,
                             losses: mx.array) -> tuple[mx.array, mx.array]:
    logits, targets = primals
    return _logits_grad(logits, targets, losses, cotangent), mx.zeros_like(targets)


def _make_chunked_losses(chunk_rows: int
                         ) -> Callable[[mx.array, mx.array, mx.array], mx.array]:
    """The loss over flat (N, d) hidden states that recomputes logits chunk by chunk."""

    @mx.custom_function
    def losses_fn(hidden: mx.array, weight: mx.array, targets: mx.array) -> mx.array:
        w = weight.astype(hidden.dtype)
        return mx.concatenate([_cross_entropy(hidden[a:b] @ w.T, targets[a:b])
                               for a, b in _row_chunks(hidden.shape[0], chunk_rows)])

    @losses_fn.vjp
    def losses_vjp(primals: tuple[mx.array, ...], cotangent: mx.array, losses: mx.array
                   ) -> tuple[mx.array, mx.array, mx.array]:
        hidden, weight, targets = primals
        w = weight.astype(hidden.dtype)
        hidden_grads, weight_grad = [], mx.zeros(weight.shape, mx.float32)
        for a, b in _row_chunks(hidden.shape[0], chunk_rows):
            grad = _logits_grad(hidden[a:b] @ w.T, targets[a:b], losses[a:b], cotangent[a:b])
            hidden_grads.append(grad @ w)
            weight_grad = weight_grad + (grad.T @ hidden[a:b]).astype(mx.float32)
        return (mx.concatenate(hidden_grads), weight_grad.astype(weight.dtype),
                mx.zeros_like(targets))

    return losses_fn


_CHUNKED_LOSSES: dict[int, Callable[[mx.array, mx.array, mx.array], mx.array]] = {}


def head_losses(hidden: mx.array, weight: mx.array, targets: mx.array,
                chunk_rows: int | None = None) -> mx.array:
    """Float32 cross-entropy (nats) at each position, equal to :func:`plain_head_losses`.

    ``hidden`` (..., d) in the compute dtype, ``weight`` (vocab, d) (cast to it), ``targets``
    (...) token ids. The gradient is hand-written (see the module docstring); with
    ``chunk_rows`` the logits are computed ``chunk_rows`` positions at a time, in the forward
    pass and again in the backward pass, instead of kept.
    """
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if chunk_rows is None:
        losses = fused_cross_entropy(flat @ weight.astype(hidden.dtype).T, flat_targets)
    else:
        if chunk_rows not in _CHUNKED_LOSSES:
            _CHUNKED_LOSSES[chunk_rows] = _make_chunked_losses(chunk_rows)
        losses = _CHUNKED_LOSSES[chunk_rows](flat, weight, flat_targets)
    return losses.reshape(targets.shape)
