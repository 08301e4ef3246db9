"""The decoder-only transformer (pre-norm RMSNorm, RoPE, GELU MLP) and its KV cache."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from .attention import flash_attention, flash_attention_available, sdpa_attention
from .config import ModelConfig
from .embedding import embed_tokens
from .gelu import gelu_approx
from .rms_norm import (
    fused_residual_norms,
    fused_residual_norms_available,
    fused_rms_norm,
    fused_rms_norm_available,
)
from .rotary import fused_heads, fused_heads_available, ops_heads


class Linear(nn.Module):
    """A bias-free linear layer whose float32 weights are cast to the input's dtype.

    Keeping float32 master weights and casting at use gives bfloat16 "autocast" training
    without a second copy of the parameters.
    """

    def __init__(self, in_dims: int, out_dims: int, std: float) -> None:
        super().__init__()
        self.weight = mx.random.normal((out_dims, in_dims)) * std

    def __call__(self, x: mx.array) -> mx.array:
        return x @ self.weight.astype(x.dtype).T


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain (CUDA kernels of
    :mod:`saga_model.rms_norm` on a CUDA GPU, ``mx.fast.rms_norm`` elsewhere)."""

    def __init__(self, dims: int, eps: float) -> None:
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        if fused_rms_norm_available(x.dtype, x.shape[-1]):
            return fused_rms_norm(x, self.weight, self.eps)
        return mx.fast.rms_norm(x, self.weight.astype(x.dtype), self.eps)

    def residual(self, x: mx.array, branch: mx.array | None = None
                 ) -> tuple[mx.array, mx.array]:
        """The residual stream ``x + branch`` (``x`` where there is no branch) and its norm.

        On a CUDA GPU one kernel adds and normalises, and in the backward pass one kernel adds
        the stream's gradient from the layers after to the norm's (see
        :data:`saga_model.rms_norm.fused_residual_norms`; the layers after must read the
        stream returned here); elsewhere MLX adds and this norm normalises the sum.
        """
        if fused_residual_norms_available(x.dtype, x.shape[-1]):
            if branch is None:
                return fused_residual_norms.start(x, self.weight, self.eps)
            return fused_residual_norms.add(x, branch, self.weight, self.eps)
        stream = x if branch is None else x + branch
        return stream, self(stream)

    def final(self, x: mx.array, branch: mx.array) -> mx.array:
        """The norm of the residual stream ``x + branch`` where nothing else reads the stream
        (one kernel each way on a CUDA GPU, as :meth:`residual`)."""
        if fused_residual_norms_available(x.dtype, x.shape[-1]):
            return fused_residual_norms.end(x, branch, self.weight, self.eps)
        return self(x + branch)


class KVCache:
    """Keys and values of past positions for one layer, in a buffer sized to the context."""

    def __init__(self) -> None:
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Append this step's keys/values (B, H, L, D) and return all of them so far."""
        steps = keys.shape[2]
        end = self.offset + steps
        if self.keys is None or end > self.keys.shape[2]:
            grow = max(256, steps)
            shape = (*keys.shape[:2], self.offset + grow, keys.shape[3])
            new_k, new_v = mx.zeros(shape, keys.dtype), mx.zeros(shape, values.dtype)
            if self.keys is not None:
                new_k[..., : self.offset, :] = self.keys[..., : self.offset, :]
                new_v[..., : self.offset, :] = self.values[..., : self.offset, :]
            self.keys, self.values = new_k, new_v
        self.keys[..., self.offset : end, :] = keys
        self.values[..., self.offset : end, :] = values
        self.offset = end
        return self.keys[..., :end, :], self.values[..., :end, :]


class Attention(nn.Module):
    """Multi-head causal self-attention with rotary position embeddings."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.rope_theta = cfg.rope_theta
        std = 0.02
        self.qkv = Linear(cfg.d_model, 3 * cfg.d_model, std)
        self.out = Linear(cfg.d_model, cfg.d_model, std / math.sqrt(2 * cfg.n_layers))

    def __call__(self, x: mx.array, cache: KVCache | None = None) -> mx.array:
        length = x.shape[1]
        projection = self.qkv(x)
        scale = self.head_dim**-0.5
        if cache is None and flash_attention_available(projection.dtype, self.head_dim, length):
            return self.out(flash_attention(projection, self.n_heads, self.rope_theta, scale))
        if cache is None and fused_heads_available(projection.dtype, self.head_dim):
            q, k, v = fused_heads(projection, self.n_heads, self.rope_theta)
        else:
            offset = cache.offset if cache is not None else 0
            q, k, v = ops_heads(projection, self.n_heads, self.rope_theta, offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        return self.out(sdpa_attention(q, k, v, scale, "causal" if length > 1 else None))


class MLP(nn.Module):
    """Two-layer feed-forward block with a GELU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = Linear(cfg.d_model, cfg.ffn_dim, 0.02)
        self.down = Linear(cfg.ffn_dim, cfg.d_model, 0.02 / math.sqrt(2 * cfg.n_layers))

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(gelu_approx(self.up(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    Each residual addition is left to the norm after it, which takes it with its
    normalisation: the block takes the previous block's last branch output not yet added, and
    leaves its own to the next block's first norm or the model's final one.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def __call__(self, x: mx.array, branch: mx.array | None, cache: KVCache | None = None
                 ) -> tuple[mx.array, mx.array]:
        """From the residual stream ``x`` and the previous block's MLP output not yet added to
        it (None for the first block): the stream after this block's attention and its own
        MLP output, not yet added."""
        x, normed = self.attn_norm.residual(x, branch)
        x, normed = self.mlp_norm.residual(x, self.dropout(self.attn(normed, cache)))
        return x, self.dropout(self.mlp(normed))


class StoryModel(nn.Module):
    """Decoder-only transformer language model over BPE tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed.weight = mx.random.normal((cfg.vocab_size, cfg.d_model)) * 0.02
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = [Block(cfg) for _ in range(cfg.n_layers)]
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.head = Linear(cfg.d_model, cfg.vocab_size, 0.02)
        self.compute_dtype = mx.float32

    def __call__(self, tokens: mx.array, cache: list[KVCache] | None = None) -> mx.array:
        """Return float32 logits (B, L, vocab) for token ids (B, L), using and filling ``cache``."""
        return self.logits(tokens, cache).astype(mx.float32)

    def logits(self, tokens: mx.array, cache: list[KVCache] | None = None) -> mx.array:
        """Logits in the compute dtype, without a float32 copy."""
        x = self.hidden_states(tokens, cache)
        return x @ self.head_weight.astype(x.dtype).T

    @property
    def head_weight(self) -> mx.array:
        """The (vocab, d_model) output projection: the head's, or the embedding table if tied."""
        return self.embed.weight if self.config.tie_embeddings else self.head.weight

    def hidden_states(self, tokens: mx.array, cache: list[KVCache] | None = None) -> mx.array:
        """The normalised last hidden states (B, L, d_model) that the head reads."""
        x = self.dropout(embed_tokens(self.embed.weight, tokens, self.compute_dtype))
        branch = None
        for i, block in enumerate(self.blocks):
            x, branch = block(x, branch, cache[i] if cache is not None else None)
        return self.norm.final(x, branch)

    def make_cache(self) -> list[KVCache]:
        """A fresh, empty KV cache (one per layer) for incremental decoding."""
        return [KVCache() for _ in self.blocks]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.trainable_parameters()))


def release_thread() -> None:
    """Free the calling thread's MLX streams; call it last in a thread that ran the model.

    MLX keeps streams per thread and a process may abort at exit if a finished thread did not
    release them (ml-explore/mlx#3126). The thread must not use MLX afterwards.
    """
    mx.clear_streams()
