"""A tiny random judge model written as a real GGUF file, for tests (no download needed)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from tokenizers import pre_tokenizers

from saga_model.judge.llama import Llama, LlamaConfig

CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "a n", "Ġa n", "Ġan d", "e d", "i n", "in g"]


def tiny_vocabulary() -> tuple[list[str], list[str]]:
    """Tokens (control, the 256 byte symbols, merged pairs) and merges of a tiny BPE."""
    tokens = CONTROL + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += ["".join(m.split(" ")) for m in MERGES]
    return tokens, MERGES


def tiny_config(vocab_size: int) -> LlamaConfig:
    """Two layers, 4 query heads sharing 2 key/value heads: every code path, tiny sizes."""
    return LlamaConfig(vocab_size=vocab_size, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                       ffn_dim=96, rope_theta=100_000.0, context_length=128)


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A random tiny Llama with its tokenizer, saved the way llama.cpp lays out GGUF files."""
    mx.random.seed(seed)
    tokens, merges = tiny_vocabulary()
    cfg = tiny_config(len(tokens))
    model = Llama(cfg)
    uint = mx.uint32
    metadata = {
        "general.architecture": "llama",
        "llama.block_count": mx.array(cfg.n_layers, dtype=uint),
        "llama.embedding_length": mx.array(cfg.d_model, dtype=uint),
        "llama.feed_forward_length": mx.array(cfg.ffn_dim, dtype=uint),
        "llama.attention.head_count": mx.array(cfg.n_heads, dtype=uint),
        "llama.attention.head_count_kv": mx.array(cfg.n_kv_heads, dtype=uint),
        "llama.rope.freq_base": mx.array(cfg.rope_theta, dtype=mx.float32),
        "llama.attention.layer_norm_rms_epsilon": mx.array(1e-5, dtype=mx.float32),
        "llama.context_length": mx.array(cfg.context_length, dtype=uint),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": mx.array([3] * len(CONTROL)
                                              + [1] * (len(tokens) - len(CONTROL)),
                                              dtype=mx.int32),
    }
    mx.save_gguf(str(path), dict(tree_flatten(model.parameters())), metadata)
    return path
