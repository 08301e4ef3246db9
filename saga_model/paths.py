"""Where the model package keeps things: the shipped model and the token cache."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "grain-de-saga"


def default_model_dir() -> Path:
    """Directory of the model shipped inside the package (``saga_model/pretrained``)."""
    return Path(__file__).parent / "pretrained"


def shipped_model() -> Path | None:
    """The shipped model's folder, or None when this installation has no trained weights."""
    folder = default_model_dir()
    return folder if (folder / "model.safetensors").is_file() else None


def token_cache_dir() -> Path:
    """Where prepared token streams are cached (``GRAIN_CACHE_DIR`` overrides)."""
    override = os.environ.get("GRAIN_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir  # imported late: only needed without the override

    return Path(user_cache_dir(APP_NAME)) / "tokens"
