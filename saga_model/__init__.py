"""Grain de Saga's story model: a tiny MLX transformer that tells children's stories.

The public API, used by the command-line tools and the terminal app::

    from saga_model import load_model, StoryRequest, SamplingOptions, stream_story

    model, tokenizer = load_model(default_model_dir())
    request = StoryRequest.create(theme="adventure", characters="Alice,Bob")
    for piece in stream_story(model, tokenizer, request, SamplingOptions(seed=1)):
        print(piece.text, end="", flush=True)

The choices (``THEMES``, ``TONES``, ``GENRES``, ``PRESETS``), ``SamplingOptions``, the
builder every front end turns user input with (``story_request``) and errors import
instantly; the rest loads MLX, NumPy and tokenizers on first use, which keeps interactive
start-up fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _blas  # noqa: F401  (must come before anything imports mlx)
from ._blas import blas_in_use
from .atomic import atomic_write_bytes, atomic_write_text
from .config import PRESETS, ModelConfig, TrainConfig
from .errors import SagaError
from .labels import GENRES, THEMES, TONES, StoryLabels, derive_labels
from .metrics import (
    Callback,
    CheckpointSaved,
    EvalMetrics,
    MetricsLogger,
    MetricsReader,
    RunStart,
    StepMetrics,
    TrainingEvent,
    TrainSummary,
    read_metrics,
)
from .paths import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    FINAL_NPZ_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    default_model_dir,
    format_duration,
    shipped_model,
)
from .story_input import SAMPLING_FIELDS, SamplingOptions, story_request

__version__ = "0.1.0"

# Names served lazily: name -> submodule that defines it.
_LAZY = {
    "load_model": "checkpoint", "save_model": "checkpoint",
    "PreparedData": "data", "prepare_data": "data", "read_stories": "data",
    "StoryPiece": "generate", "StoryRequest": "generate",
    "make_decoder": "generate", "stream_story": "generate", "tell_story": "generate",
    "StoryModel": "model", "count_parameters": "model", "release_thread": "model",
    "StoryTokenizer": "tokenizer", "train_tokenizer": "tokenizer",
    "run_training": "train",
}

if TYPE_CHECKING:
    from .checkpoint import load_model, save_model
    from .data import PreparedData, prepare_data, read_stories
    from .generate import StoryPiece, StoryRequest, make_decoder, stream_story, tell_story
    from .model import StoryModel, count_parameters, release_thread
    from .tokenizer import StoryTokenizer, train_tokenizer
    from .train import run_training


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saga_model' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "FINAL_NPZ_FILE",
    "GENRES",
    "METRICS_FILE",
    "PRESETS",
    "SAMPLING_FIELDS",
    "THEMES",
    "TOKENIZER_FILE",
    "TONES",
    "WEIGHTS_FILE",
    "Callback",
    "CheckpointSaved",
    "EvalMetrics",
    "MetricsLogger",
    "MetricsReader",
    "ModelConfig",
    "PreparedData",
    "RunStart",
    "SagaError",
    "SamplingOptions",
    "StepMetrics",
    "StoryLabels",
    "StoryModel",
    "StoryPiece",
    "StoryRequest",
    "StoryTokenizer",
    "TrainConfig",
    "TrainSummary",
    "TrainingEvent",
    "__version__",
    "atomic_write_bytes",
    "atomic_write_text",
    "blas_in_use",
    "count_parameters",
    "default_model_dir",
    "derive_labels",
    "format_duration",
    "load_model",
    "make_decoder",
    "prepare_data",
    "read_metrics",
    "read_stories",
    "release_thread",
    "run_training",
    "save_model",
    "shipped_model",
    "story_request",
    "stream_story",
    "tell_story",
    "train_tokenizer",
]
