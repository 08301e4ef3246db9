"""Atomic checkpoints, the seed-compatible ``final_model.npz`` and loading any saved model."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from .atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from .config import ModelConfig, read_json
from .errors import SagaError
from .model import StoryModel
from .paths import CHECKPOINTS_DIR, CONFIG_FILE, FINAL_NPZ_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from .tokenizer import StoryTokenizer

WEIGHTS = WEIGHTS_FILE
CONFIG = CONFIG_FILE
TOKENIZER = TOKENIZER_FILE
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
FINAL_NPZ = FINAL_NPZ_FILE
CHECKPOINTS = CHECKPOINTS_DIR
_NPZ_CONFIG_KEY = "__config_json__"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def model_weights(model: nn.Module) -> dict[str, mx.array]:
    """Flat name -> array mapping of a model's parameters."""
    return dict(tree_flatten(model.parameters()))


def _write_safetensors(path: Path, arrays: dict[str, mx.array],
                       metadata: dict[str, str] | None = None) -> None:
    """``mx.save_safetensors`` with a clear error: MLX reports a failed write (a full disk, a
    read-only folder) as a bare RuntimeError."""
    try:
        mx.save_safetensors(str(path), arrays, metadata=metadata or {})
    except RuntimeError as exc:
        needed = sum(array.nbytes for array in arrays.values())
        partial = path.stat().st_size if path.exists() else 0
        free = shutil.disk_usage(path.parent).free + partial
        reason = (f"the disk is full ({free / 1e6:,.1f} MB free, {needed / 1e6:,.1f} MB needed)"
                  if free < needed else str(exc))
        raise SagaError(f"cannot write {path}: {reason}") from None


def _save_safetensors(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    try:
        _write_safetensors(tmp, arrays, metadata)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_arrays(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> None:
    """Write ``arrays`` (with string ``metadata``) as one safetensors file, atomically."""
    _save_safetensors(path, arrays, metadata)


def save_model(directory: str | Path, model: StoryModel, tokenizer: StoryTokenizer) -> None:
    """Write a loadable model folder: ``model.safetensors``, ``config.json``, ``tokenizer.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(model.config.to_dict())
    _save_safetensors(directory / WEIGHTS, model_weights(model), {"config": config_json})
    model.config.save(directory / CONFIG)
    tokenizer.save(directory / TOKENIZER)


def save_npz(path: str | Path, model: StoryModel) -> None:
    """Write the seed-style ``final_model.npz`` (weights plus the config as JSON bytes)."""
    arrays = {k: np.array(v.astype(mx.float32)) for k, v in model_weights(model).items()}
    arrays[_NPZ_CONFIG_KEY] = np.frombuffer(json.dumps(model.config.to_dict()).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class TrainingState:
    """Where a run stands: enough, with the optimizer state, to resume it exactly."""

    step: int = 0
    tokens_seen: int = 0
    elapsed_seconds: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    #: Sum and count of the losses since the last logged one: the first loss logged after a
    #: resume then averages the same steps as in an unbroken run.
    window_loss: float = 0.0
    window_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def save_checkpoint(output_dir: str | Path, model: StoryModel, optimizer: optim.Optimizer,
                    tokenizer: StoryTokenizer, state: TrainingState,
                    train_config: dict[str, Any],
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``checkpoints/step_NNNNNN`` atomically and return its path.

    ``write_extra(folder)`` may add files of its own before the checkpoint is complete.
    """
    target = Path(output_dir) / CHECKPOINTS / f"step_{state.step:07d}"
    with atomic_directory(target) as tmp:
        if write_extra is not None:
            write_extra(tmp)
        save_model(tmp, model, tokenizer)
        optimizer_arrays = dict(tree_flatten(optimizer.state))
        _write_safetensors(tmp / OPTIMIZER, optimizer_arrays)
        (tmp / STATE).write_text(json.dumps({**state.to_dict(), "train_config": train_config},
                                            indent=2))
    return target


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def prune_checkpoints(output_dir: str | Path, keep: int, protect: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints, never the one of step ``protect``."""
    checkpoints = list_checkpoints(output_dir)
    for path in checkpoints[: max(0, len(checkpoints) - keep)]:
        if protect is None or path.name != f"step_{protect:07d}":
            _discard(path)


def _discard(path: Path) -> None:
    """Delete a folder so that a crash half-way leaves only a leftover that
    :func:`remove_leftovers` recognises: renamed first (atomically), then deleted."""
    trash = path.with_name(f".{path.name}.{os.getpid()}.discarded.tmp")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _is_leftover(path: Path) -> bool:
    """A temporary file or folder of an interrupted write, or a half-deleted checkpoint."""
    name = path.name
    if name.startswith(".") and (".tmp" in name or ".old-" in name):
        return True
    return path.parent.name == CHECKPOINTS and _STEP_DIR.match(name) is not None and not (
        path / STATE).is_file()


def remove_leftovers(output_dir: str | Path) -> list[Path]:
    """Delete what a run killed while writing left behind in ``output_dir`` (temporary files
    and folders of checkpoints, models and the final model; checkpoints half-deleted while
    pruning) and return their paths. Only for a folder no other process is writing."""
    out = Path(output_dir)
    folders = [out, out / CHECKPOINTS, *(p for p in out.iterdir() if p.is_dir())] \
        if out.is_dir() else []
    removed = []
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if _is_leftover(path):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def check_checkpoint(checkpoint: Path) -> None:
    """Read every file of a checkpoint; :class:`SagaError` says what is damaged."""
    load_training_state(checkpoint)
    config = ModelConfig.load(checkpoint / CONFIG)
    StoryTokenizer.load(checkpoint / TOKENIZER)
    weights, _ = load_arrays(checkpoint / WEIGHTS)
    apply_weights(StoryModel(config), weights, checkpoint / WEIGHTS)
    if not (checkpoint / OPTIMIZER).is_file():
        raise SagaError(f"{checkpoint / OPTIMIZER} is missing")
    for arrays in sorted(checkpoint.glob("*.safetensors")):  # the optimizer's, any others
        load_arrays(arrays)


def load_training_state(checkpoint: Path) -> tuple[TrainingState, dict[str, Any]]:
    """The :class:`TrainingState` and training config stored in a checkpoint."""
    data = read_json(checkpoint / STATE, "checkpoint state")
    train_config = data.pop("train_config", {})
    try:
        return TrainingState(**data), train_config
    except TypeError as exc:
        raise SagaError(f"checkpoint state {checkpoint / STATE} is invalid: {exc}") from None


def load_optimizer_state(optimizer: optim.Optimizer, checkpoint: Path) -> None:
    """Restore AdamW moments and step count from a checkpoint."""
    arrays, _ = load_arrays(checkpoint / OPTIMIZER)
    optimizer.state = tree_unflatten(list(arrays.items()))


def load_arrays(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Arrays and string metadata of a ``.safetensors`` or ``.npz`` file (never unpickles)."""
    if not path.is_file():
        raise SagaError(f"model file not found: {path}")
    with open(path, "rb"):  # an unreadable file fails here with a plain "Permission denied"
        pass
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            embedded = arrays.pop(_NPZ_CONFIG_KEY, None)
            metadata = {} if embedded is None else {"config": bytes(embedded).decode()}
            return arrays, metadata
        arrays, metadata = mx.load(str(path), return_metadata=True)
        return arrays, metadata
    except Exception as exc:  # corrupt files raise ValueError, RuntimeError, zipfile errors, ...
        raise SagaError(f"cannot read {path}: not a valid model file ({exc})") from None


def apply_weights(model: StoryModel, arrays: dict[str, Any], source: Path) -> None:
    """Load ``arrays`` into ``model``, checking that names and shapes match exactly."""
    expected = {k: v.shape for k, v in model_weights(model).items()}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise SagaError(f"{source} does not match its config: {detail}")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise SagaError(f"{source} does not match its config: {name} has shape "
                            f"{tuple(arrays[name].shape)}, expected {tuple(shape)}")
    model.load_weights([(k, mx.array(v, dtype=mx.float32)) for k, v in arrays.items()])
    mx.eval(model.parameters())


def resolve_model_files(model_path: str | Path) -> tuple[Path, Path | None]:
    """The weights file a model path points to, and the directory to look for siblings in.

    Accepts a weights file (``.safetensors`` / ``.npz``), a model directory, a checkpoint
    directory, or a training output directory (its final model, else its newest checkpoint).
    """
    path = Path(model_path).expanduser()
    if path.is_file():
        return path, path.parent
    if path.is_dir():
        for name in (WEIGHTS, FINAL_NPZ):
            if (path / name).is_file():
                return path / name, path
        checkpoints = list_checkpoints(path)
        if checkpoints:
            return checkpoints[-1] / WEIGHTS, checkpoints[-1]
        raise SagaError(f"no model found in {path} (expected {WEIGHTS} or {FINAL_NPZ})")
    raise SagaError(f"model not found: {path}")


def load_model(model_path: str | Path,
               tokenizer_path: str | Path | None = None) -> tuple[StoryModel, StoryTokenizer]:
    """Load a model and its tokenizer from any saved form (see :func:`resolve_model_files`)."""
    weights_file, folder = resolve_model_files(model_path)
    arrays, metadata = load_arrays(weights_file)
    config = _config_for(weights_file, metadata)
    tokenizer_file = Path(tokenizer_path) if tokenizer_path else (folder or Path()) / TOKENIZER
    if not tokenizer_file.is_file():
        hint = "" if tokenizer_path else " (pass --tokenizer_path)"
        raise SagaError(f"tokenizer not found: {tokenizer_file}{hint}")
    tokenizer = StoryTokenizer.load(tokenizer_file)
    if tokenizer.vocab_size != config.vocab_size:
        raise SagaError(f"tokenizer {tokenizer_file} has {tokenizer.vocab_size} tokens but the "
                        f"model {config.vocab_size}: they do not belong together")
    model = StoryModel(config)
    apply_weights(model, arrays, weights_file)
    model.eval()
    return model, tokenizer


def _config_for(weights_file: Path, metadata: dict[str, str]) -> ModelConfig:
    if "config" in metadata:
        try:
            return ModelConfig.from_dict(json.loads(metadata["config"]))
        except json.JSONDecodeError:
            raise SagaError(f"{weights_file} has a corrupt embedded config") from None
    sibling = weights_file.parent / CONFIG
    if sibling.is_file():
        return ModelConfig.load(sibling)
    raise SagaError(f"no config found for {weights_file} (expected {sibling})")


def write_final_outputs(output_dir: str | Path, model: StoryModel,
                        tokenizer: StoryTokenizer) -> None:
    """Write the finished model into ``output_dir`` in both layouts (directory and seed npz)."""
    save_model(output_dir, model, tokenizer)
    save_npz(Path(output_dir) / FINAL_NPZ, model)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
