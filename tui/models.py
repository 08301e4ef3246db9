"""Finding story models: the shipped one and those of training runs (loading them is the
story session's job, :mod:`tui.session`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import saga_model
from saga_model import BEST_DIR, WEIGHTS_FILE

BEST_SO_FAR = "best so far"


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
            kind = "final" if folder == run else BEST_SO_FAR
            choices.append(ModelChoice(f"{run.name} ({kind})", folder))
    return choices


def lasting_label(label: str) -> str:
    """A model's picker label as a saved story keeps showing it: a run's "best so far" was
    true only while it trained, so it reads "during training" (the fingerprint saved with the
    story names the exact weights)."""
    suffix = f" ({BEST_SO_FAR})"
    return label.removesuffix(suffix) + " (during training)" if label.endswith(suffix) \
        else label


def model_label(path: Path, choices: list[ModelChoice]) -> str:
    """How to name a model path in the UI (its picker label, else the folder name)."""
    for choice in choices:
        if choice.path == path:
            return choice.label
    return path.name


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
