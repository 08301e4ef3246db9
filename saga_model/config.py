"""Model and training configuration as dataclasses with a JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .atomic import atomic_write_text
from .errors import SagaError

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise SagaError(f"{what} has unknown keys: {', '.join(unknown)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise SagaError(f"{what} is invalid: {exc}") from None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: What a field of each annotated type accepts (a config read from JSON may hold anything).
_TYPE_CHECKS: dict[str, tuple[str, Any]] = {
    "int": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a finite number", lambda v: _is_number(v) and math.isfinite(v)),
    "float | None": ("a finite number or null",
                     lambda v: v is None or (_is_number(v) and math.isfinite(v))),
    "int | None": ("a whole number or null",
                   lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
}


def _check_field_types(config: object) -> None:
    """Raise ValueError naming the first field whose value has the wrong type (``8.0`` for a
    size, a string for a rate, NaN)."""
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        if str(field.type) not in _TYPE_CHECKS:
            continue
        expected, accepts = _TYPE_CHECKS[str(field.type)]
        value = getattr(config, field.name)
        if not accepts(value):
            raise ValueError(f"{field.name} must be {expected}, not {value!r}")


@dataclass
class ModelConfig:
    """Shape of the decoder-only transformer."""

    vocab_size: int = 8000
    context_length: int = 512
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 384
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        _check_field_types(self)
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "ffn_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("the head size (d_model / n_heads) must be even for RoPE")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as stored in ``config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with a clear error."""
        return _from_dict(cls, data, "model config")

    def save(self, path: str | Path) -> None:
        """Write as pretty JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read ``config.json``; a missing or malformed file raises :class:`SagaError`."""
        return cls.from_dict(read_json(path, "model config"))


#: Named model shapes. "seed" is the shipped model's shape; "tiny" is for tests and smoke runs.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=8000, context_length=128, d_model=32, n_layers=1, n_heads=2,
                        ffn_dim=64),
    "seed": ModelConfig(),
    "4x": ModelConfig(d_model=256, n_layers=6, n_heads=8, ffn_dim=768),
}


@dataclass
class TrainConfig:
    """Optimisation, data augmentation and bookkeeping settings of one training run."""

    steps: int = 2000
    max_minutes: float | None = None
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"
    decay_fraction: float = 0.2
    ema_decay: float = 0.0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eval_every: int = 200
    eval_batches: int = 50
    patience: int = 0
    save_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    precision: str = "float32"
    field_dropout: float = 0.3
    name_swap: float = 0.9
    augment_copies: int = 1
    valid_fraction: float = 0.05

    def __post_init__(self) -> None:
        _check_field_types(self)
        checks = {
            "steps": self.steps > 0,
            "batch_size": self.batch_size > 0,
            "lr": self.lr > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "eval_every": self.eval_every >= 0,
            "eval_batches": self.eval_batches >= 0,
            "patience": self.patience >= 0,
            "save_every": self.save_every >= 0,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "grad_clip": self.grad_clip >= 0,
            "weight_decay": self.weight_decay >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "schedule": self.schedule in ("cosine", "wsd"),
            "decay_fraction": 0 <= self.decay_fraction <= 1,
            "ema_decay": 0 <= self.ema_decay < 1,
            "field_dropout": 0 <= self.field_dropout <= 1,
            "name_swap": 0 <= self.name_swap <= 1,
            "augment_copies": self.augment_copies >= 1,
            "valid_fraction": 0 < self.valid_fraction < 1,
            "max_minutes": self.max_minutes is None or self.max_minutes > 0,
            "precision": self.precision in ("float32", "bfloat16"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid value for {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as stored in ``train_config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with a clear error."""
        return _from_dict(cls, data, "training config")


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; errors become :class:`SagaError` naming ``what``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SagaError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SagaError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SagaError(f"{what} {path} is not a JSON object")
    return data

