"""Grain de Saga's story model: a tiny MLX transformer that tells children's stories.

The public API, used by the command-line tools and the terminal app::

    from saga_model import load_model, StoryRequest, SamplingOptions, stream_story

    model, tokenizer = load_model(default_model_dir())
    request = StoryRequest.create(theme="adventure", characters="Alice,Bob")
    for piece in stream_story(model, tokenizer, request, SamplingOptions(seed=1)):
        print(piece.text, end="", flush=True)
"""

from . import _blas  # noqa: F401  (must come before anything imports mlx)
from ._blas import blas_in_use
from .checkpoint import load_model, save_model
from .config import PRESETS, ModelConfig, TrainConfig
from .data import PreparedData, prepare_data, read_stories
from .errors import SagaError
from .generate import SamplingOptions, StoryPiece, StoryRequest, stream_story, tell_story
from .labels import GENRES, THEMES, TONES, StoryLabels, derive_labels
from .model import StoryModel, count_parameters
from .paths import default_model_dir
from .tokenizer import StoryTokenizer, train_tokenizer
from .train import Callback, EvalMetrics, MetricsLogger, StepMetrics, TrainSummary, run_training

__version__ = "0.1.0"

__all__ = [
    "GENRES", "PRESETS", "THEMES", "TONES", "Callback", "EvalMetrics", "MetricsLogger",
    "ModelConfig", "PreparedData", "SagaError", "SamplingOptions", "StepMetrics", "StoryLabels",
    "StoryModel", "StoryPiece", "StoryRequest", "StoryTokenizer", "TrainConfig", "TrainSummary",
    "__version__", "blas_in_use", "count_parameters", "default_model_dir", "derive_labels",
    "load_model", "prepare_data", "read_stories", "run_training", "save_model", "stream_story",
    "tell_story", "train_tokenizer",
]
