"""A PyTorch twin of :class:`saga_model.model.StoryModel`, for side-by-side training speed.

Same shapes and parameter names (pre-norm RMSNorm, fused bias-free qkv, non-traditional RoPE,
tanh-GELU MLP, untied head unless the config ties it), so parameter counts match exactly and
weights copy across by name (``load_mlx_weights``). PyTorch is not a project dependency:
import this module only where ``torch`` is installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saga_model.config import ModelConfig


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight``, like ``mx.fast.rms_norm``."""

    def __init__(self, dims: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dims))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise over the last axis (``F.rms_norm`` where this PyTorch has it)."""
        if hasattr(F, "rms_norm"):  # PyTorch >= 2.4
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    """Causal multi-head self-attention with non-traditional (rotate-halves) RoPE."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        half = cfg.head_dim // 2
        inv_freq = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.arange(cfg.context_length, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[2]
        cos, sin = self.cos[:length].to(x.dtype), self.sin[:length].to(x.dtype)
        a, b = x.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        batch, length, dims = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        out = F.scaled_dot_product_attention(self._rope(q), self._rope(k), v, is_causal=True,
                                             scale=self.head_dim**-0.5)
        return self.out(out.transpose(1, 2).reshape(batch, length, dims))


class MLP(nn.Module):
    """Up-projection, tanh-approximated GELU, down-projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TorchStoryModel(nn.Module):
    """The decoder-only transformer of ``saga_model``, in PyTorch (no dropout)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = (None if cfg.tie_embeddings
                     else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False))
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)
        residual = ("attn.out.weight", "mlp.down.weight")
        for name, param in self.named_parameters():
            if param.ndim == 2:
                nn.init.normal_(param, std=residual_std if name.endswith(residual) else 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) of token ids (B, T)."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x @ self.embed.weight.T if self.head is None else self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_mlx_weights(model: TorchStoryModel, weights: Mapping[str, Any]) -> None:
    """Copy a StoryModel's flat weights (name -> array) into ``model``; names must match."""
    state = {name: torch.from_numpy(np.array(value, dtype=np.float32))
             for name, value in weights.items()}
    model.load_state_dict(state, strict=True)


def make_optimizer(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                   fused: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only, as ``saga_model.train.make_optimizer``."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay},
              {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
