"""Finding story models (the shipped one and those of training runs) and loading them once."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saga_model import SagaError, default_model_dir, load_model

WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ModelChoice:
    """A model the picker offers."""

    label: str
    path: Path


def shipped_model() -> Path | None:
    """The model shipped with the package, if it has been installed."""
    folder = default_model_dir()
    return folder if (folder / WEIGHTS).is_file() else None


def run_model(run: Path) -> Path | None:
    """The best model a training run has so far: its final model, else its ``best/``."""
    for folder in (run, run / "best"):
        if (folder / WEIGHTS).is_file():
            return folder
    return None


def discover_models(runs_root: Path) -> list[ModelChoice]:
    """The shipped model (if any) then every run's model, most recently changed run first."""
    choices = []
    shipped = shipped_model()
    if shipped is not None:
        choices.append(ModelChoice("shipped model", shipped))
    runs = [p for p in runs_root.iterdir() if p.is_dir()] if runs_root.is_dir() else []
    for run in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True):
        folder = run_model(run)
        if folder is not None:
            kind = "final" if folder == run else "best so far"
            choices.append(ModelChoice(f"{run.name} ({kind})", folder))
    return choices


def model_label(path: Path, choices: list[ModelChoice]) -> str:
    """How to name a model path in the UI (its picker label, else the folder name)."""
    for choice in choices:
        if choice.path == path:
            return choice.label
    return path.name


class ModelCache:
    """Keeps the last loaded model; safe to call from worker threads (use
    :func:`tui.threads.run_in_fresh_thread` for anything that touches MLX).

    A model folder that changed on disk since it was loaded (a run's ``best/`` during training)
    is loaded again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._loaded: tuple[Any, Any] | None = None

    @staticmethod
    def _key_for(path: Path) -> tuple[str, int]:
        weights = path / WEIGHTS if path.is_dir() else path
        try:
            stamp = weights.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return str(path), stamp

    def get(self, path: Path) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for ``path``; raises :class:`SagaError` if it cannot load."""
        key = self._key_for(path)
        with self._lock:
            if self._key != key or self._loaded is None:
                self._loaded = None
                try:
                    self._loaded = load_model(path)
                except SagaError:
                    raise
                except Exception as exc:  # an unreadable file: permissions, I/O errors, ...
                    raise SagaError(f"cannot load the model in {path}: {exc}") from None
                self._key = key
            return self._loaded


def pick_model(choices: list[ModelChoice], preferred: str) -> tuple[list[ModelChoice], Path | None]:
    """The picker's choices and selection, honouring the user's last choice.

    A preferred folder that discovery does not know (a model loaded from elsewhere) is added
    if it still holds a model; otherwise the first choice (the shipped model, else the newest
    run) is selected.
    """
    if preferred:
        path = Path(preferred).expanduser()
        if any(choice.path == path for choice in choices):
            return choices, path
        if path.is_file() or (path / WEIGHTS).is_file():
            return [*choices, ModelChoice(f"{path.name} (folder)", path)], path
    return choices, (choices[0].path if choices else None)
