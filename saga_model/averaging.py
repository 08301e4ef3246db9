"""An exponential moving average (EMA) of a model's weights, kept while it trains.

After every optimizer step ``average = decay * average + (1 - decay) * weights``, starting
from the weights the run starts with. The average is scored on the validation split next to
the raw weights and saved as its own model folder (``ema/`` of the run) when it is at its best;
checkpoints keep it too, so ``--resume`` continues the same average.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from . import checkpoint as ckpt
from .errors import SagaError

#: The run's folder holding the average's best model.
EMA_DIR = "ema"
#: The average's weights inside a checkpoint folder.
EMA_FILE = "ema.safetensors"
_BEST_KEY = "best_val_loss"


@mx.compile
def _blend(average: list[mx.array], weights: list[mx.array], decay: mx.array
           ) -> list[mx.array]:
    return [decay * a + (1.0 - decay) * w for a, w in zip(average, weights, strict=True)]


class WeightAverage:
    """The EMA of ``model``'s weights with ``decay`` (0 < decay < 1) per step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError("the EMA decay must be between 0 and 1")
        self.decay = mx.array(decay, mx.float32)
        self.names = [name for name, _ in tree_flatten(model.trainable_parameters())]
        self.average = [w for _, w in tree_flatten(model.trainable_parameters())]
        #: Lowest validation loss of the average so far (None before the first evaluation).
        self.best_val_loss: float | None = None

    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights in (lazily: evaluate :attr:`average` with the step)."""
        weights = [w for _, w in tree_flatten(model.trainable_parameters())]
        self.average = _blend(self.average, weights, self.decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Give ``model`` the averaged weights inside the block, its own weights afterwards."""
        own = model.trainable_parameters()
        model.update(tree_unflatten(list(zip(self.names, self.average, strict=True))))
        try:
            yield
        finally:
            model.update(own)

    def save(self, path: Path) -> None:
        """Write the average (and its best validation loss) as one safetensors file."""
        metadata = {} if self.best_val_loss is None else {_BEST_KEY: repr(self.best_val_loss)}
        ckpt.save_arrays(path, dict(zip(self.names, self.average, strict=True)), metadata)

    def load(self, path: Path) -> None:
        """Continue the average saved at ``path`` (by :meth:`save`); names must match."""
        arrays, metadata = ckpt.load_arrays(path)
        if sorted(arrays) != sorted(self.names):
            raise SagaError(f"{path} does not hold this model's averaged weights")
        self.average = [mx.array(arrays[name], dtype=mx.float32) for name in self.names]
        best = metadata.get(_BEST_KEY)
        self.best_val_loss = float(best) if best is not None else None
