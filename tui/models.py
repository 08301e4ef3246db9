"""Finding story models (the shipped one and those of training runs) and loading them once."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import saga_model
from saga_model import BEST_DIR, WEIGHTS_FILE, SagaError


@dataclass(frozen=True)
class ModelChoice:
    """A model the picker offers."""

    label: str
    path: Path


def holds_model(path: Path) -> bool:
    """Whether ``path`` is a model: a folder with weights, or a weights/checkpoint file."""
    return path.is_file() or (path / WEIGHTS_FILE).is_file()


def run_model(run: Path) -> Path | None:
    """The best model a training run has so far: its final model, else its ``best/``."""
    for folder in (run, run / BEST_DIR):
        if (folder / WEIGHTS_FILE).is_file():
            return folder
    return None


def discover_models(runs_root: Path) -> list[ModelChoice]:
    """The shipped model (if any) then every run's model, most recently changed run first."""
    choices = []
    shipped = saga_model.shipped_model()
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


def _weights(path: Path) -> Path:
    """The weights file of a model folder (or the file itself)."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def model_fingerprint(path: Path) -> str:
    """A short id of a model's weights (SHA-256), the same wherever the folder is copied;
    ``""`` if the file cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(_weights(path), "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return ""
    return f"sha256:{digest.hexdigest()[:16]}"


class ModelCache:
    """Keeps the last loaded model and the fingerprints of models seen; safe to call from
    worker threads (use :func:`tui.threads.run_in_fresh_thread` for anything that touches MLX).

    A model folder that changed on disk since it was loaded (a run's ``best/`` during training)
    is loaded again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._loaded: tuple[Any, Any] | None = None
        self._fingerprints: dict[tuple[str, int], str] = {}

    @staticmethod
    def _key_for(path: Path) -> tuple[str, int]:
        try:
            stamp = _weights(path).stat().st_mtime_ns
        except OSError:
            stamp = 0
        return str(path), stamp

    def fingerprint(self, path: Path) -> str:
        """:func:`model_fingerprint` of ``path``, computed once per version of the file."""
        key = self._key_for(path)
        with self._lock:
            known = self._fingerprints.get(key)
        if known is None:
            known = model_fingerprint(path)
            with self._lock:
                self._fingerprints[key] = known
        return known

    def get(self, path: Path) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for ``path``; raises :class:`SagaError` if it cannot load."""
        key = self._key_for(path)
        with self._lock:
            if self._key != key or self._loaded is None:
                self._loaded = None
                try:
                    self._loaded = saga_model.load_model(path)
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
        if holds_model(path):
            return [*choices, ModelChoice(f"{path.name} (folder)", path)], path
    return choices, (choices[0].path if choices else None)
