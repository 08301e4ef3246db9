"""A Llama decoder (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP) in MLX.

Built for SmolLM2 as llama.cpp stores it in GGUF files (see :mod:`.gguf`): the module and
parameter names are GGUF's own (``blk.0.attn_q.weight``, ``token_embd.weight``, ...), so a
GGUF file's tensors load without renaming, and layers become quantized ones where the file
is quantized (Q4_0, Q4_1 and Q8_0 load as MLX affine quantization; see
:func:`.gguf.load_llama`). llama.cpp's converter permutes the query and key rows so that
rotary embeddings rotate *adjacent* pairs of dimensions; the model therefore uses
``mx.fast.rope(traditional=True)`` (measured: 2.20 nats/token on a TinyStories story; 4.76
with the other layout).

A :class:`~saga_model.model.KVCache` (the story model's) per layer lets the model decode one
token at a time, for a whole batch at once: rows of different lengths are left-padded and
the padding is masked out (rotary embeddings only see relative positions, so a shifted row
computes the same values).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..errors import SagaError
from ..model import KVCache


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama model."""

    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    context_length: int = 2048
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head."""
        return self.d_model // self.n_heads


class Block(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + SwiGLU(norm(x)).

    Attention is causal, with grouped key/value heads and adjacent-pair RoPE.
    """

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
        self.attn_norm = nn.RMSNorm(d, eps=cfg.norm_eps)
        self.attn_q = nn.Linear(d, d, bias=False)
        self.attn_k = nn.Linear(d, kv, bias=False)
        self.attn_v = nn.Linear(d, kv, bias=False)
        self.attn_output = nn.Linear(d, d, bias=False)
        self.ffn_norm = nn.RMSNorm(d, eps=cfg.norm_eps)
        self.ffn_gate = nn.Linear(d, cfg.ffn_dim, bias=False)
        self.ffn_up = nn.Linear(d, cfg.ffn_dim, bias=False)
        self.ffn_down = nn.Linear(cfg.ffn_dim, d, bias=False)

    def attention(self, x: mx.array, mask: mx.array | str | None,
                  cache: KVCache | None) -> mx.array:
        """Self-attention of ``x`` (B, L, d) over the cache and itself."""
        cfg = self.cfg
        batch, length, _ = x.shape
        q = self.attn_q(x).reshape(batch, length, cfg.n_heads, -1).transpose(0, 2, 1, 3)
        k = self.attn_k(x).reshape(batch, length, cfg.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.attn_v(x).reshape(batch, length, cfg.n_kv_heads, -1).transpose(0, 2, 1, 3)
        q, k = (mx.fast.rope(t, cfg.head_dim, traditional=True, base=cfg.rope_theta, scale=1.0,
                             offset=cache.offset if cache is not None else 0) for t in (q, k))
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=cfg.head_dim**-0.5,
                                                   mask=mask)
        return self.attn_output(out.transpose(0, 2, 1, 3).reshape(batch, length, -1))

    def __call__(self, x: mx.array, mask: mx.array | str | None,
                 cache: KVCache | None) -> mx.array:
        x = x + self.attention(self.attn_norm(x), mask, cache)
        h = self.ffn_norm(x)
        return x + self.ffn_down(nn.silu(self.ffn_gate(h)) * self.ffn_up(h))


class Llama(nn.Module):
    """The whole decoder: embedding, blocks, final norm and (tied or separate) output head."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embd = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blk = [Block(cfg) for _ in range(cfg.n_layers)]
        self.output_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def make_cache(self) -> list[KVCache]:
        """An empty KV cache, one per layer."""
        return [KVCache() for _ in self.blk]

    def __call__(self, tokens: mx.array, cache: list[KVCache] | None = None,
                 left_padding: mx.array | None = None) -> mx.array:
        """Next-token logits (B, L, vocab) of ``tokens`` (B, L).

        With ``cache``, ``tokens`` continue what the cache holds. ``left_padding`` (B,) is how
        many leading positions of each row (counted from the first token the cache saw) are
        padding: they are masked out of attention.
        """
        x = self.token_embd(tokens)
        offset = cache[0].offset if cache else 0
        mask = _attention_mask(tokens.shape[1], offset, left_padding)
        for i, block in enumerate(self.blk):
            x = block(x, mask, cache[i] if cache else None)
        x = self.output_norm(x)
        if self.cfg.tie_embeddings:
            return self.token_embd.as_linear(x)
        return self.output(x)


def _attention_mask(length: int, offset: int,
                    left_padding: mx.array | None) -> mx.array | str | None:
    """Boolean mask (B, 1, L, offset + L): the past and itself, never left padding.

    A padding position still sees itself, so no row is fully masked (which would give NaN).
    """
    if left_padding is None:
        return "causal" if length > 1 else None
    keys = mx.arange(offset + length)[None, None, :]
    queries = mx.arange(offset, offset + length)[None, :, None]
    allowed = (keys <= queries) & ((keys >= left_padding[:, None, None]) | (keys == queries))
    return allowed[:, None]


def generate_batch(model: Llama, prompts: Sequence[Sequence[int]], max_tokens: int,
                   stop_ids: Collection[int], temperature: float = 0.8, top_p: float = 1.0,
                   seed: int = 0, pad_id: int = 0) -> list[list[int]]:
    """Sample continuations of several prompts at once; each stops at a ``stop_ids`` token.

    Prompts are left-padded to one length and decoded together with a KV cache. Returns the
    generated ids per prompt (the stop token included when reached). The same seed, prompts
    and settings give the same result on the same device.
    """
    if not prompts or any(not p for p in prompts):
        raise SagaError("generate_batch needs prompts of at least one token")
    width = max(len(p) for p in prompts)
    padding = [width - len(p) for p in prompts]
    tokens = mx.array([[pad_id] * pad + list(p) for pad, p in zip(padding, prompts,
                                                                     strict=True)])
    left_padding = mx.array(padding)
    cache = model.make_cache()
    logits = model(tokens, cache, left_padding)[:, -1]
    key = mx.random.key(seed)
    stops = set(stop_ids)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_tokens):
        key, subkey = mx.random.split(key)
        chosen = _sample(logits.astype(mx.float32), temperature, top_p, subkey)
        for row, token in enumerate(chosen.tolist()):
            if not done[row]:
                outputs[row].append(token)
                done[row] = token in stops
        if all(done):
            break
        logits = model(chosen[:, None], cache, left_padding)[:, -1]
    return outputs


def _sample(logits: mx.array, temperature: float, top_p: float, key: mx.array) -> mx.array:
    """One token per row: greedy at temperature 0, else nucleus sampling (B, vocab) -> (B,)."""
    if temperature == 0:
        return mx.argmax(logits, axis=-1)
    logits = logits / temperature
    if top_p < 1.0:
        order = mx.argsort(-logits, axis=-1)
        ranked = mx.take_along_axis(logits, order, axis=-1)
        probs = mx.softmax(ranked, axis=-1)
        outside = (mx.cumsum(probs, axis=-1) - probs) >= top_p
        ranked = mx.where(outside, -mx.inf, ranked)
        picked = mx.random.categorical(ranked, key=key)
        return mx.take_along_axis(order, picked[:, None], axis=-1)[:, 0]
    return mx.random.categorical(logits, key=key)
