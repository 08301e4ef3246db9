"""``grain-train``: train a story model on a folder of stories (or resume a run).

Started by ``mlx.launch`` it trains data-parallel: every process runs this command, and only
rank 0 prints and writes files (see docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from ..atomic import atomic_write_text
from ..config import PRESETS, ModelConfig, TrainConfig, read_json
from ..data import prepare_data
from ..distributed import current_world, exit_when_stuck
from ..errors import SagaError
from ..finetune import (
    FINETUNE_DEFAULTS,
    REPLAY_DIR,
    REPLAY_PER_STORY,
    BaseModel,
    check_same_shape,
    load_base,
    replay_data,
)
from ..metrics import Callback, EvalMetrics, MetricsLogger, StepMetrics, TrainSummary
from ..paths import BEST_DIR, METRICS_FILE, format_duration, token_cache_dir
from ..tokenizer import StoryTokenizer
from ..train import run_training
from .common import (
    ArgumentParser,
    StatusLine,
    check_writable_dir,
    finite_float,
    run_command,
    version_text,
)

PROG = "grain-train"
RUN_FILE = "run.json"
#: How long a distributed rank may take to stop cleanly after a signal before it exits anyway.
STOP_GRACE_SECONDS = 120.0

# Flags that map one-to-one onto TrainConfig fields (None = keep the config's value).
_TRAIN_FLAGS: dict[str, tuple[type, str]] = {
    "steps": (int, "number of optimisation steps"),
    "max_minutes": (float, "stop (and save) after this many minutes"),
    "batch_size": (int, "sequences per step (in total over all processes of a launch)"),
    "lr": (float, "peak learning rate"),
    "warmup_steps": (int, "linear warm-up steps"),
    "schedule": (str, "learning-rate schedule after warm-up: cosine, or wsd (stable, then a "
                      "linear decay over the last --decay_fraction of the steps)"),
    "decay_fraction": (float, "share of the steps in the final decay of the wsd schedule"),
    "min_lr_ratio": (float, "final learning rate as a share of --lr"),
    "ema_decay": (float, "keep an average of the weights (e.g. 0.999; 0 = off), scored at "
                         "each evaluation and saved in ema/ of the run"),
    "weight_decay": (float, "AdamW weight decay (matrices only)"),
    "grad_clip": (float, "clip the gradient norm (0 = off)"),
    "seed": (int, "random seed (data order, init, dropout)"),
    "eval_every": (int, "evaluate on the validation split every N steps (0 = only at the end)"),
    "eval_batches": (int, "at most N validation batches per evaluation (0 = all)"),
    "save_every": (int, "write a checkpoint every N steps (0 = only at the end)"),
    "keep_checkpoints": (int, "how many recent checkpoints to keep"),
    "patience": (int, "stop after N evaluations without improvement (0 = never)"),
    "precision": (str, "float32 or bfloat16 (mixed precision, float32 weights)"),
    "field_dropout": (float, "chance of dropping each conditioning field in training"),
    "name_swap": (float, "chance of renaming a story's characters with diverse names"),
    "augment_copies": (int, "conditioned copies of each training story"),
    "valid_fraction": (float, "share of stories held out when there is no valid.txt"),
}


def build_parser() -> ArgumentParser:
    """The command's flags."""
    parser = ArgumentParser(prog=PROG, description="Train a Grain de Saga story model.")
    parser.add_argument("--data_dir", help="a file or folder of stories: .txt or .md "
                        "(separated by <|endoftext|> lines, or one per file), .jsonl (a text "
                        "field), .parquet; each may be .gz")
    parser.add_argument("--output_dir", default="output",
                        help="where checkpoints, metrics.jsonl and the final model go")
    parser.add_argument("--config",
                        help=f"model shape: a preset ({', '.join(PRESETS)}) or a JSON file "
                        "(default: seed)")
    parser.add_argument("--init_from", metavar="shipped|PATH",
                        help="fine-tune: start from this model (its weights, tokenizer and "
                        "shape) with settings for small story sets; see docs/teach.md")
    parser.add_argument("--replay", type=finite_float,
                        help="with --init_from: stories told by the base model mixed in per "
                        f"training story, against forgetting (default {REPLAY_PER_STORY:g}; "
                        "0 = none)")
    parser.add_argument("--dropout", type=finite_float, help="dropout rate of the model")
    parser.add_argument("--context_length", type=int, help="context length in tokens")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output_dir from its newest checkpoint")
    parser.add_argument("--tokenizer_path",
                        help="reuse this tokenizer.json instead of training one")
    parser.add_argument("--cache_dir", help="where tokenized data is cached")
    parser.add_argument("--sample_tokens", type=int, default=0,
                        help="after each evaluation, write a sample story of N tokens")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the result")
    parser.add_argument("--version", action="store_true", help="print versions and the BLAS in use")
    for name, (kind, text) in _TRAIN_FLAGS.items():
        parser.add_argument(f"--{name}", type=finite_float if kind is float else kind, help=text)
    return parser


def _model_config(spec: str) -> ModelConfig:
    if spec in PRESETS:
        return ModelConfig.from_dict(PRESETS[spec].to_dict())
    if Path(spec).is_file():
        return ModelConfig.load(spec)
    raise SagaError(f"unknown --config {spec!r}: use a preset ({', '.join(PRESETS)}) "
                    "or the path of a JSON file")


def _recorded_data_dir(out: Path) -> str:
    run = read_json(out / RUN_FILE, "run description (pass --data_dir instead)")
    if not isinstance(run.get("data_dir"), str):
        raise SagaError(f"{out / RUN_FILE} names no data folder: pass --data_dir")
    return run["data_dir"]


def _step_bytes_per_token(cfg: ModelConfig) -> int:
    """A generous estimate of the memory one training token takes in a step (float32 logits,
    their softmax and gradient; each layer's activations and attention scores)."""
    per_layer = 16 * cfg.d_model + 3 * cfg.ffn_dim + 2 * cfg.n_heads * cfg.context_length
    return 4 * (3 * cfg.vocab_size + cfg.n_layers * per_layer)


def _check_memory(cfg: ModelConfig, sequences: int, batch_size: int) -> None:
    """Refuse, before anything is allocated, a batch whose step cannot fit in this machine's
    memory (``sequences`` per process of a ``batch_size`` batch)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this system
        return
    per_sequence = cfg.context_length * _step_bytes_per_token(cfg)
    if sequences * per_sequence > memory:
        fits = max(1, memory // per_sequence // 2)
        raise SagaError(f"--batch_size {batch_size} needs about "
                        f"{sequences * per_sequence / 1e9:,.0f} GB of memory for one step, "
                        f"more than the {memory / 1e9:,.0f} GB of this machine; try "
                        f"--batch_size {fits} or less")


def _newest_intact(checkpoints: list[Path], status: StatusLine, move_damaged: bool) -> Path:
    """The newest checkpoint whose files all read back; damaged newer ones are moved aside
    (renamed ``damaged-step_N``, out of the run's way) with a message."""
    for path in reversed(checkpoints):
        try:
            ckpt.check_checkpoint(path)
        except SagaError as exc:
            if move_damaged:
                os.replace(path, path.with_name(f"damaged-{path.name}"))
            status.print(f"checkpoint {path.name} is damaged ({exc}); moved aside as "
                         f"damaged-{path.name}")
            continue
        return path
    raise SagaError(f"no intact checkpoint to resume in {checkpoints[0].parent}: start a "
                    "new run")


def _drop_metrics_after(path: Path, step: int) -> None:
    """Forget the metrics a killed run logged after the checkpoint it resumes from (and a
    line cut short by the kill), so that no step appears twice on a chart."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and not (isinstance(event.get("step"), int)
                                            and event["step"] > step):
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _remove_unfinished_run(out: Path, created: bool) -> None:
    """After a new run failed before its first checkpoint or model: remove the files it
    started with (tokenizer, run description, metrics), and the folder if it made it."""
    if ckpt.list_checkpoints(out) or (out / BEST_DIR).exists():
        return
    for name in (ckpt.TOKENIZER, RUN_FILE, METRICS_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / REPLAY_DIR, ignore_errors=True)
    checkpoints = out / ckpt.CHECKPOINTS
    if checkpoints.is_dir() and not any(checkpoints.iterdir()) and created:
        checkpoints.rmdir()
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _recorded_init_from(out: Path) -> str | None:
    """The base model a resumed run was taught from (None for a run from scratch)."""
    if not (out / RUN_FILE).is_file():
        return None
    value = read_json(out / RUN_FILE, "run description").get("init_from")
    return value if isinstance(value, str) else None


def _finetune_shape(base: BaseModel, args: Any, shape_overrides: dict[str, Any]) -> ModelConfig:
    """The base model's shape, with only dropout changeable; any other change is refused."""
    if args.config:
        check_same_shape(base, _model_config(args.config), "--config")
    if args.context_length not in (None, base.config.context_length):
        raise SagaError(f"--context_length {args.context_length} does not match the base "
                        f"model's {base.config.context_length}: leave it out with --init_from")
    return ModelConfig.from_dict({**base.config.to_dict(), **shape_overrides})


def _overrides(args: Any) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}


def _train_config(base: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict({**base, **overrides})


class ConsoleReport(Callback):
    """Shows progress on stderr and evaluation results as permanent lines."""

    def __init__(self, status: StatusLine) -> None:
        self.status = status

    def on_start(self, info: dict[str, Any]) -> None:
        m = info["model_config"]
        self.status.print(
            f"model: {info['parameters']:,} parameters (d_model {m['d_model']}, {m['n_layers']} "
            f"layers, {m['n_heads']} heads, ffn {m['ffn_dim']}, context {m['context_length']}, "
            f"vocab {m['vocab_size']}) on {info['device']}")
        self.status.print(f"data: {info['train_tokens']:,} training tokens, "
                          f"{info['valid_tokens']:,} validation tokens")
        if info["world_size"] > 1:
            n, batch = info["world_size"], info["train_config"]["batch_size"]
            self.status.print(f"data parallel: {n} processes, {batch // n} of the {batch} "
                              "sequences of each step per process")
        if info["start_step"]:
            self.status.print(f"resuming at step {info['start_step']}")

    def on_step(self, m: StepMetrics) -> None:
        self.status.update(
            f"step {m.step}/{m.total_steps} | loss {m.loss:.3f} | lr {m.lr:.2e} | "
            f"{m.tokens_per_sec:,.0f} tok/s | {format_duration(m.elapsed)} elapsed, "
            f"ETA {format_duration(m.remaining_seconds)}")

    def on_eval(self, m: EvalMetrics) -> None:
        best = " (best)" if m.is_best else ""
        ema = ("" if m.ema_val_loss is None else
               f"; EMA {m.ema_val_loss:.4f}, {m.ema_val_bpb:.4f} bits/byte")
        self.status.print(f"step {m.step}: val loss {m.val_loss:.4f}, "
                          f"{m.val_bpb:.4f} bits/byte{best}{ema}")
        if m.sample:
            self.status.print(f"  sample: {m.sample.strip()[:300]}")

    def on_end(self, s: TrainSummary) -> None:
        self.status.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grain-train``."""
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_text(PROG))
        return 0
    world = current_world()
    out = Path(args.output_dir)
    check_writable_dir(out, "--output_dir")
    if args.cache_dir:
        check_writable_dir(args.cache_dir, "--cache_dir")
    status = StatusLine(quiet=args.quiet or not world.is_main)
    if world.is_main:
        leftovers = ckpt.remove_leftovers(out)
        if leftovers:
            status.print(f"removed {len(leftovers)} leftover(s) of an interrupted run: "
                         f"{', '.join(p.name for p in leftovers[:3])}")
    existing = ckpt.list_checkpoints(out)
    overrides = _overrides(args)
    tokenizer: StoryTokenizer | None = None
    resume_from = None
    base: BaseModel | None = None
    init_from: str | None = None
    replay_count = 0
    replay_share = REPLAY_PER_STORY if args.replay is None else args.replay
    if args.init_from and args.resume:
        raise SagaError("--init_from starts a new run: leave it out with --resume")
    if replay_share < 0:
        raise SagaError("--replay must be 0 or more")
    created = not out.exists()
    if args.resume:
        if not existing:
            raise SagaError(f"nothing to resume in {out}: it has no checkpoints")
        resume_from = _newest_intact(existing, status, move_damaged=world.is_main)
        resumed_state, saved_train = ckpt.load_training_state(resume_from)
        if world.is_main:
            _drop_metrics_after(out / METRICS_FILE, resumed_state.step)
        train_cfg = _train_config(saved_train, overrides)
        model_cfg = ModelConfig.load(resume_from / ckpt.CONFIG)
        tokenizer = StoryTokenizer.load(resume_from / ckpt.TOKENIZER)
        data_dir = args.data_dir or _recorded_data_dir(out)
        init_from = _recorded_init_from(out)
        replay_count = len(list((out / REPLAY_DIR).glob("*.txt")))
    else:
        if existing:
            raise SagaError(f"{out} already holds a training run (step "
                            f"{existing[-1].name.removeprefix('step_').lstrip('0') or 0}); "
                            "pass --resume to continue it or choose another --output_dir")
        if not args.data_dir:
            raise SagaError("--data_dir is required (a folder or file of stories)")
        data_dir = args.data_dir
        shape_overrides = {k: v for k, v in (("dropout", args.dropout),
                                             ("context_length", args.context_length))
                           if v is not None}
        if args.init_from:
            base = load_base(args.init_from, args.tokenizer_path)
            init_from = base.name
            model_cfg = _finetune_shape(base, args, shape_overrides)
            tokenizer = base.tokenizer
            train_cfg = _train_config(FINETUNE_DEFAULTS, overrides)
        else:
            model_cfg = _model_config(args.config or "seed")
            model_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), **shape_overrides})
            train_cfg = _train_config({}, overrides)
            if args.tokenizer_path:
                tokenizer = StoryTokenizer.load(args.tokenizer_path)

    world.check_batch_size(train_cfg.batch_size)
    _check_memory(model_cfg, train_cfg.batch_size // world.size, train_cfg.batch_size)
    # Stop requests (Ctrl-C, SIGTERM from the TUI) are honoured from here on: one that arrives
    # while data is prepared stops the run before its first step, with a resumable checkpoint.
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        status.print("stopping after this step (press Ctrl-C again to abort)...")
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    cache_dir = Path(args.cache_dir) if args.cache_dir else token_cache_dir()
    with world.one_at_a_time():  # the ranks of one host share the token cache: fill it once
        tokenizer, data = prepare_data(
            data_dir, cache_dir,
            tokenizer=tokenizer, vocab_size=model_cfg.vocab_size, seed=train_cfg.seed,
            field_dropout=train_cfg.field_dropout, name_swap=train_cfg.name_swap,
            augment_copies=train_cfg.augment_copies, valid_fraction=train_cfg.valid_fraction,
            progress=status.progress,
        )
        if base is not None and replay_share > 0:
            replay_count = max(2, round(replay_share * len(data.train.starts)
                                        / train_cfg.augment_copies))
        if replay_count:
            data = replay_data(data, out / REPLAY_DIR, tokenizer, cache_dir, train_cfg,
                               base=base, count=replay_count, progress=status.progress)
    status.close()
    if resume_from is None and base is None:
        model_cfg.vocab_size = tokenizer.vocab_size
    try:
        if world.is_main:
            if resume_from is None:
                out.mkdir(parents=True, exist_ok=True)
                tokenizer.save(out / ckpt.TOKENIZER)
                (out / METRICS_FILE).unlink(missing_ok=True)
            ckpt.write_json(out / RUN_FILE, {
                "data_dir": str(Path(data_dir).resolve()), "model_config": model_cfg.to_dict(),
                "init_from": init_from,
                "train_config": train_cfg.to_dict(), "sample_tokens": args.sample_tokens,
            })
        if world.is_distributed:
            exit_when_stuck(STOP_GRACE_SECONDS, world.rank)
        summary = run_training(
            data, tokenizer, out, model_cfg, train_cfg, resume_from=resume_from,
            init_from=base.weights_file if base is not None else None,
            callbacks=[MetricsLogger(out / METRICS_FILE), ConsoleReport(status)],
            stop_event=stop, sample_tokens=args.sample_tokens, world=world,
        )
    except BaseException:
        if world.is_main and resume_from is None:
            _remove_unfinished_run(out, created)
        raise
    if not world.is_main:
        return 0
    best = (f"best val loss {summary.best_val_loss:.4f} at step {summary.best_step}"
            if summary.best_val_loss is not None else "no evaluation")
    took = format_duration(summary.elapsed)
    if summary.stop_reason == "stopped":
        print(f"stopped at step {summary.step} after {took}; {best}. "
              f"Continue with: {PROG} --resume --output_dir {out}")
    else:
        print(f"done ({summary.stop_reason}) at step {summary.step} after {took}; {best}. "
              f"Model: {out / ckpt.FINAL_NPZ}")
    return 0


def run() -> None:
    """Console-script entry point."""
    run_command(PROG, main)


if __name__ == "__main__":
    run()
