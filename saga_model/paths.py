"""Where the model package keeps things: the shipped model and the token cache."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "grain-de-saga"

# The layout of a model or training-run folder (shared by the trainer, the loader and the app).
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
FINAL_NPZ_FILE = "final_model.npz"


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``; ``3700`` -> ``"1h01m"``."""
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def default_model_dir() -> Path:
    """Directory of the model shipped inside the package (``saga_model/pretrained``)."""
    return Path(__file__).parent / "pretrained"


def shipped_model() -> Path | None:
    """The shipped model's folder, or None when this installation has no trained weights."""
    folder = default_model_dir()
    return folder if (folder / WEIGHTS_FILE).is_file() else None


def token_cache_dir() -> Path:
    """Where prepared token streams are cached (``GRAIN_CACHE_DIR`` overrides)."""
    override = os.environ.get("GRAIN_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir  # imported late: only needed without the override

    return Path(user_cache_dir(APP_NAME)) / "tokens"
