"""Saving and loading models in every supported form, and refusing bad files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from saga_model import checkpoint as ckpt
from saga_model import load_model
from saga_model.errors import SagaError


def logits_of(model_dir: Path, **kwargs: Path) -> np.ndarray:
    model, tokenizer = load_model(model_dir, **kwargs)
    return np.array(model(mx.array([tokenizer.encode("<|story|>Once upon a time")])))


def test_every_saved_form_loads_the_same_weights(tiny_model_dir: Path) -> None:
    reference = logits_of(tiny_model_dir)  # the run folder: its final model.safetensors
    # The final model is the best one seen in validation, in both layouts.
    for path in (tiny_model_dir / ckpt.FINAL_NPZ, tiny_model_dir / ckpt.WEIGHTS,
                 tiny_model_dir / "best"):
        assert np.allclose(logits_of(path), reference, atol=1e-5), path
    last = logits_of(ckpt.list_checkpoints(tiny_model_dir)[-1])
    assert last.shape == reference.shape and np.isfinite(last).all()


def test_npz_is_self_describing_and_pickle_free(tiny_model_dir: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.npz"
    lone.write_bytes((tiny_model_dir / ckpt.FINAL_NPZ).read_bytes())
    # No config.json beside it: the config travels inside; the tokenizer is given explicitly.
    load_model(lone, tokenizer_path=tiny_model_dir / ckpt.TOKENIZER)
    with np.load(lone, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)


def test_missing_tokenizer_is_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    lone = tmp_path / "model.npz"
    lone.write_bytes((tiny_model_dir / ckpt.FINAL_NPZ).read_bytes())
    with pytest.raises(SagaError, match=r"tokenizer not found.*--tokenizer_path"):
        load_model(lone)


def test_corrupt_files_are_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "final_model.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(SagaError, match="not a valid model file"):
        load_model(bad, tokenizer_path=tiny_model_dir / ckpt.TOKENIZER)
    truncated = tmp_path / "model.safetensors"
    truncated.write_bytes((tiny_model_dir / ckpt.WEIGHTS).read_bytes()[:500])
    with pytest.raises(SagaError, match="not a valid model file"):
        load_model(truncated, tokenizer_path=tiny_model_dir / ckpt.TOKENIZER)


def test_mismatched_config_is_reported(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / ckpt.CONFIG).read_text())
    config["d_model"] *= 2
    (tiny_model_dir / "other").mkdir()
    (tiny_model_dir / "other" / ckpt.CONFIG).write_text(json.dumps(config))
    with zipfile.ZipFile(tiny_model_dir / ckpt.FINAL_NPZ) as source:
        arrays = {n[:-4]: np.load(source.open(n)) for n in source.namelist()
                  if not n.startswith("__config")}
    np.savez(tiny_model_dir / "other" / "weights.npz", **arrays)
    with pytest.raises(SagaError, match="does not match its config"):
        load_model(tiny_model_dir / "other" / "weights.npz",
                   tokenizer_path=tiny_model_dir / ckpt.TOKENIZER)


def test_nothing_to_load(tmp_path: Path) -> None:
    with pytest.raises(SagaError, match="model not found"):
        load_model(tmp_path / "missing")
    with pytest.raises(SagaError, match="no model found"):
        load_model(tmp_path)
