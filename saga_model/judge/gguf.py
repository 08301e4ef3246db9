"""Loading a Llama-architecture GGUF file (weights and tokenizer) with MLX.

``mx.load`` reads GGUF files: float tensors as they are, Q4_0 / Q4_1 / Q8_0 ones as MLX
affine-quantized triples (``weight``, ``scales``, ``biases``; groups of 32). Only the
``llama`` architecture is supported, which covers SmolLM2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from ..errors import SagaError
from .llama import Llama, LlamaConfig

#: GGUF's token type of control tokens (``<|endoftext|>``, ``<|im_start|>``, ...).
CONTROL_TOKEN_TYPE = 3


def read_gguf(path: str | Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """The tensors and metadata of a GGUF file; a clear :class:`SagaError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise SagaError(f"judge model not found: {path}")
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise SagaError(f"cannot read the GGUF file {path}: {exc}") from None
    return weights, metadata


def _int(metadata: dict[str, Any], key: str, default: int | None = None) -> int:
    value = metadata.get(key)
    if value is None:
        if default is None:
            raise SagaError(f"the GGUF file lacks {key}")
        return default
    return int(np.array(value).item()) if isinstance(value, mx.array) else int(value)


def _float(metadata: dict[str, Any], key: str, default: float) -> float:
    value = metadata.get(key)
    if value is None:
        return default
    return float(np.array(value).item()) if isinstance(value, mx.array) else float(value)


def llama_config(weights: dict[str, mx.array], metadata: dict[str, Any]) -> LlamaConfig:
    """The model's shape from the ``llama.*`` metadata (quantization from the tensors)."""
    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise SagaError(f"the judge needs a llama GGUF model, not {arch!r}")
    embedding = weights.get("token_embd.weight")
    if embedding is None:
        raise SagaError("the GGUF file has no token_embd.weight")
    return LlamaConfig(
        vocab_size=int(embedding.shape[0]),
        n_layers=_int(metadata, "llama.block_count"),
        d_model=_int(metadata, "llama.embedding_length"),
        n_heads=_int(metadata, "llama.attention.head_count"),
        n_kv_heads=_int(metadata, "llama.attention.head_count_kv",
                        _int(metadata, "llama.attention.head_count")),
        ffn_dim=_int(metadata, "llama.feed_forward_length"),
        rope_theta=_float(metadata, "llama.rope.freq_base", 10_000.0),
        norm_eps=_float(metadata, "llama.attention.layer_norm_rms_epsilon", 1e-5),
        context_length=_int(metadata, "llama.context_length", 2048),
        tie_embeddings="output.weight" not in weights,
    )


def gguf_tokenizer(metadata: dict[str, Any]) -> Tokenizer:
    """A Hugging Face tokenizer rebuilt from ``tokenizer.ggml.*`` (GPT-2 style byte-level BPE).

    Digits are split one by one before byte-level pre-tokenization, as SmolLM2's own
    tokenizer does; control tokens are special tokens.
    """
    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise SagaError("the judge needs a GGUF file with a gpt2-style BPE tokenizer")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type")
    if types is not None:
        kinds = np.array(types)
        tokenizer.add_special_tokens([t for t, k in zip(tokens, kinds, strict=False)
                                      if k == CONTROL_TOKEN_TYPE])
    return tokenizer


def load_llama(path: str | Path) -> tuple[Llama, Tokenizer, dict[str, Any]]:
    """The model, tokenizer and metadata of a llama GGUF file, ready for inference.

    Quantized layers stay quantized (fast on GPUs, small in memory); everything else computes
    in float32.
    """
    weights, metadata = read_gguf(path)
    try:
        model = llama_from_weights(weights, metadata)
    except SagaError as exc:
        raise SagaError(f"the GGUF file {path} does not fit a llama model: {exc}") from None
    return model, gguf_tokenizer(metadata), metadata


def llama_from_weights(weights: dict[str, mx.array], metadata: dict[str, Any]) -> Llama:
    """A :class:`Llama` holding GGUF-named ``weights`` (quantized or not), in eval mode."""
    model = Llama(llama_config(weights, metadata))
    _quantize_like(model, weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise SagaError(str(exc).splitlines()[0]) from None
    model.set_dtype(mx.float32)  # scales, biases and norms: compute in float32
    model.eval()
    mx.eval(model.parameters())
    return model


def _quantize_like(model: Llama, weights: dict[str, mx.array]) -> None:
    """Turn the layers that the file stores quantized into quantized layers of the same kind.

    Each layer has its own bits (SmolLM2's Q4_1 file keeps the embedding in 8 bits): packed
    uint32 columns times 32 over the layer's input size; groups from the scales' columns.
    """
    def spec(path: str, module: nn.Module) -> dict[str, int] | bool:
        scales = weights.get(f"{path}.scales")
        if scales is None or not hasattr(module, "to_quantized"):
            return False
        in_dims = module.weight.shape[1]
        return {"group_size": in_dims // scales.shape[1],
                "bits": weights[f"{path}.weight"].shape[1] * 32 // in_dims}

    nn.quantize(model, class_predicate=spec)
