"""Teaching an existing model a family's own stories (``grain-train --init_from``).

A fine-tune starts from a base model's weights and keeps its tokenizer and shape unchanged;
only the training settings differ from a run from scratch (:data:`FINETUNE_DEFAULTS`, chosen by
``benchmarks/teach_family.py`` on the family fixture: see docs/teach.md). To keep the model
able to tell other stories, stories told by the base model itself are mixed into the training
stories (:func:`replay_stories`); they never enter the held-out share that early stopping
watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from .atomic import atomic_write_text
from .config import ModelConfig, TrainConfig
from .data import PreparedData, TokenSplit, prepare_data
from .data.corpus import ProgressFn
from .errors import SagaError
from .generate import SamplingOptions, StoryRequest, tell_story
from .model import StoryModel
from .paths import shipped_model
from .tokenizer import StoryTokenizer

#: ``--init_from`` value naming the model shipped with the package.
SHIPPED = "shipped"
#: Training settings of a fine-tune where the command line gives none (measured on the family
#: set: 32 stories, 8 held out; see docs/teach.md).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "steps": 300, "lr": 5e-4, "warmup_steps": 10, "batch_size": 8, "eval_every": 10,
    "eval_batches": 0, "patience": 3, "save_every": 50, "valid_fraction": 0.2,
    "name_swap": 0.0, "weight_decay": 0.0,
}
#: Stories the base model tells for each training story, mixed into training (0 = none).
REPLAY_PER_STORY = 1.0
#: Length cap of each replayed story, in tokens.
REPLAY_TOKENS = 300
#: Folder of the run where the replayed stories are kept.
REPLAY_DIR = "replay"


@dataclass
class BaseModel:
    """The model a fine-tune starts from."""

    name: str
    weights_file: Path
    model: StoryModel
    tokenizer: StoryTokenizer

    @property
    def config(self) -> ModelConfig:
        """The base model's shape (a fine-tune keeps it)."""
        return self.model.config


def load_base(spec: str, tokenizer_path: str | None = None) -> BaseModel:
    """The base model named by ``--init_from``: ``shipped`` or any saved model path.

    Raises :class:`SagaError` when it is missing, damaged or has no tokenizer beside it (and
    ``tokenizer_path`` names none).
    """
    if spec == SHIPPED:
        folder = shipped_model()
        if folder is None:
            raise SagaError("this installation has no shipped model: pass --init_from PATH")
        path: Path = folder
    else:
        path = Path(spec).expanduser()
    weights_file, _ = ckpt.resolve_model_files(path)
    model, tokenizer = ckpt.load_model(path, tokenizer_path)
    return BaseModel(spec, weights_file, model, tokenizer)


def check_same_shape(base: BaseModel, requested: ModelConfig, flag: str) -> None:
    """Refuse a ``--config``/``--context_length`` that differs from the base model's shape."""
    mine = {**requested.to_dict(), "dropout": 0.0}
    theirs = {**base.config.to_dict(), "dropout": 0.0}
    if mine != theirs:
        differ = sorted(k for k in mine if mine[k] != theirs[k])
        raise SagaError(f"{flag} does not match the base model ({', '.join(differ)} differ): "
                        "a fine-tune keeps the base model's shape; leave it out")


def replay_stories(base: BaseModel, count: int, seed: int) -> list[str]:
    """``count`` stories told by the base model, unconditioned, ``REPLAY_TOKENS`` at most."""
    options = [SamplingOptions(max_tokens=REPLAY_TOKENS, seed=seed * 100_003 + i)
               for i in range(count)]
    return [story.strip() for story in (tell_story(base.model, base.tokenizer, StoryRequest(),
                                                   o) for o in options) if story.strip()]


def write_replay(folder: Path, stories: list[str]) -> None:
    """Keep the replayed stories in the run folder (``--resume`` reads them back)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    for i, story in enumerate(stories):
        atomic_write_text(folder / f"{i:04d}.txt", story + "\n")


def mix_in(data: PreparedData, extra: PreparedData) -> PreparedData:
    """``data`` with every story of ``extra`` (both splits) added to its training split."""
    parts = [data.train, extra.train, extra.valid]
    offsets = np.cumsum([0] + [p.n_tokens for p in parts[:-1]])
    tokens = np.concatenate([np.asarray(p.tokens) for p in parts])
    starts = np.concatenate([p.starts + o for p, o in zip(parts, offsets, strict=True)])
    train = TokenSplit(tokens, starts.astype(np.int64), sum(p.n_bytes for p in parts))
    return PreparedData(train=train, valid=data.valid, cache_dir=data.cache_dir)


def replay_data(data: PreparedData, folder: Path, tokenizer: StoryTokenizer, cache_root: Path,
                cfg: TrainConfig, *, base: BaseModel | None = None, count: int = 0,
                progress: ProgressFn | None = None) -> PreparedData:
    """``data`` with stories told by the base model mixed into its training split.

    With ``base``, ``count`` new stories are told and kept in ``folder``; without (a resumed
    run), the ones already there are used, so the run continues on the same data.
    """
    if base is not None:
        if progress:
            progress("telling stories to keep the base model's voice", 0, count)
        write_replay(folder, replay_stories(base, count, cfg.seed))
    _, extra = prepare_data(folder, cache_root, tokenizer=tokenizer, seed=cfg.seed,
                            field_dropout=cfg.field_dropout, name_swap=0.0,
                            augment_copies=cfg.augment_copies,
                            valid_fraction=cfg.valid_fraction, progress=progress)
    return mix_in(data, extra)
