"""The training loop: AdamW with warmup + cosine, a compiled step, evals, checkpoints, callbacks.

Under MLX's launcher the same loop trains data-parallel (see :mod:`saga_model.distributed`):
each rank trains on its slice of the global batch, gradients and losses are averaged over the
ranks, and only rank 0 runs the callbacks and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import average_gradients

from . import checkpoint as ckpt
from .averaging import EMA_DIR, EMA_FILE, WeightAverage
from .config import ModelConfig, TrainConfig
from .data import PreparedData, eval_batch_count, eval_chunks
from .distributed import StopVote, World, current_world
from .errors import SagaError
from .fused_optimizer import fused_adamw_available, fused_clip_and_update
from .generate import SamplingOptions, StoryRequest, tell_story
from .head_loss import fused_head_loss_available, head_loss
from .metrics import Callback, EvalMetrics, StepMetrics, TrainSummary
from .model import StoryModel, count_parameters
from .paths import BEST_DIR
from .tokenizer import StoryTokenizer
from .train_batches import TrainingBatches

LOG_EVERY = 10


def make_schedule(cfg: TrainConfig) -> Callable[[mx.array], mx.array]:
    """Linear warmup to ``lr``, then down to ``lr * min_lr_ratio`` at ``steps``.

    ``cosine`` decays along a cosine from the end of warmup; ``wsd`` (warmup, stable, decay)
    holds ``lr`` and decays linearly over the last ``decay_fraction`` of the steps, so a run
    can be continued from its stable phase (on other data, say) before it decays.
    """
    warmup = min(cfg.warmup_steps, cfg.steps - 1)
    low = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_start = cfg.steps - min(round(cfg.steps * cfg.decay_fraction), cfg.steps - warmup)

        def wsd(step: mx.array) -> mx.array:
            step = step.astype(mx.float32)
            done = mx.clip((step - decay_start) / max(1, cfg.steps - decay_start), 0.0, 1.0)
            return mx.where(step < warmup, cfg.lr * step / max(1, warmup),
                            cfg.lr + (low - cfg.lr) * done)

        return wsd
    cosine = optim.cosine_decay(cfg.lr, max(1, cfg.steps - warmup), low)
    if warmup == 0:
        return cosine
    return optim.join_schedules([optim.linear_schedule(0.0, cfg.lr, warmup), cosine], [warmup])


def make_optimizer(cfg: TrainConfig) -> optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norm gains)."""
    schedule = make_schedule(cfg)
    betas = [cfg.beta1, cfg.beta2]
    return optim.MultiOptimizer(
        [optim.AdamW(schedule, betas=betas, weight_decay=cfg.weight_decay),
         optim.AdamW(schedule, betas=betas, weight_decay=0.0)],
        [lambda _path, weight: weight.ndim >= 2],
    )


def token_losses(logits: mx.array, targets: mx.array) -> mx.array:
    """Next-token cross-entropy in nats (float32) at each position.

    Logits in a low-precision compute dtype are not widened to float32 first: on a GPU that
    copy of 8,000 values per position costs about a fifth of a bfloat16 training step
    (``benchmarks/train_breakdown.py``), and training goes the same way without it.
    """
    return nn.losses.cross_entropy(logits, targets, reduction="none").astype(mx.float32)


def loss_terms(model: StoryModel, batch: mx.array, ignore_id: int | None = None
               ) -> tuple[mx.array, mx.array]:
    """Summed next-token cross-entropy (nats) of ``batch`` (B, L+1) and the number of targets.

    Targets equal to ``ignore_id`` (the story-start marker in validation) are not counted.
    """
    inputs, targets = batch[:, :-1], batch[:, 1:]
    losses = token_losses(model.logits(inputs), targets)
    if ignore_id is None:
        return losses.sum(), mx.array(targets.size, mx.float32)
    mask = (targets != ignore_id).astype(mx.float32)
    return (losses * mask).sum(), mask.sum()


def training_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """The mean next-token cross-entropy of ``batch`` (B, L+1) that the training step
    differentiates: on a CUDA GPU the loss and the logits' gradient come from one fused kernel
    (:mod:`saga_model.head_loss`); elsewhere autodiff differentiates :func:`loss_terms`."""
    if not fused_head_loss_available(model.compute_dtype, model.config.vocab_size):
        nats, count = loss_terms(model, batch)
        return nats / count
    hidden = model.hidden_states(batch[:, :-1])
    targets = batch[:, 1:].reshape(-1)
    return head_loss(hidden.reshape(targets.size, -1), model.head_weight, targets) / targets.size


def build_train_step(model: StoryModel, optimizer: optim.Optimizer, grad_clip: float, *,
                     group: mx.distributed.Group | None = None
                     ) -> tuple[Callable[[mx.array], tuple[mx.array, mx.array]], list[Any]]:
    """The compiled training step ``batch (B, L+1) -> (mean loss, gradient norm)``.

    Also returns the state the step reads and updates (model, optimizer, random state), which
    callers pass to ``mx.eval``/``mx.async_eval`` after each step. With a ``group`` of several
    processes, each passes its equal share of the global batch; gradients and the loss are
    averaged over the group before clipping, so every rank takes the same update and reports
    the loss (and norm) of the whole batch. On a CUDA GPU the clipping and AdamW run as two
    kernels (:mod:`saga_model.fused_optimizer`); elsewhere ``optim.clip_grad_norm`` and the
    optimizer's own update.
    """
    state = [model.state, optimizer.state, mx.random.state]
    ranks = group.size() if group is not None else 1
    max_norm = grad_clip or float("inf")

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: mx.array) -> tuple[mx.array, mx.array]:
        loss, grads = nn.value_and_grad(model, training_loss)(model, batch)
        if ranks > 1:
            grads = average_gradients(grads, group)
            loss = mx.distributed.all_sum(loss, group=group) / ranks
        if fused_adamw_available(optimizer, grads):
            return loss, fused_clip_and_update(model, optimizer, grads, max_norm)
        grads, norm = optim.clip_grad_norm(grads, max_norm)
        optimizer.update(model, grads)
        return loss, norm

    return step, state


def evaluate(model: StoryModel, data: PreparedData, tokenizer: StoryTokenizer, context: int,
             batch_size: int, max_batches: int = 0, *, world: World | None = None,
             progress: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """Validation loss (nats per story token) and bits per UTF-8 byte of the story text.

    With a distributed ``world`` each rank scores every ``size``-th batch and the totals are
    summed over the ranks, so all of them get the single-process result (up to rounding).
    ``progress(done, total)`` is called with this process's batches after each one.
    """
    world = world or World()
    total, count = mx.array(0.0), mx.array(0.0)
    chunks = eval_chunks(data.valid, context, batch_size, max_batches)
    batches = eval_batch_count(data.valid, context, batch_size, max_batches)
    mine = len(range(world.rank, batches, world.size))
    for done, chunk in enumerate(itertools.islice(chunks, world.rank, None, world.size), 1):
        nats, n = loss_terms(model, mx.array(chunk), tokenizer.story_id)
        total, count = total + nats, count + n
        mx.eval(total, count)
        if progress is not None:
            progress(done, mine)
    total, count = world.sum(total), world.sum(count)
    return loss_figures(total.item(), count.item(), data.valid.n_tokens,
                        data.valid.starts.size, data.valid.n_bytes)


def loss_figures(nats: float, targets: float, n_tokens: int, n_examples: int,
                 n_bytes: int) -> tuple[float, float]:
    """(nats per token, bits per UTF-8 byte) from the summed loss of ``targets`` scored tokens
    of a stream of ``n_tokens`` tokens: ``n_examples`` stories of ``n_bytes`` bytes."""
    if targets == 0:
        raise SagaError("the validation split has no tokens")
    # Every token but the story-start markers is a scored target when the whole stream is
    # scored; when only part of it is (max_batches), count only that share of the bytes.
    story_targets = n_tokens - n_examples
    bytes_covered = n_bytes * min(1.0, targets / max(1, story_targets))
    return nats / targets, nats / math.log(2) / max(1.0, bytes_covered)


def _check_ranks_agree(world: World, data: PreparedData, tokenizer: StoryTokenizer,
                       model: StoryModel, cfg: TrainConfig, state: ckpt.TrainingState) -> None:
    """Stop every rank with the same error unless all prepared the same run."""
    weights = hashlib.sha256()
    for name, value in sorted(ckpt.model_weights(model).items()):
        weights.update(name.encode())
        weights.update(np.array(value).tobytes())
    fingerprint = json.dumps({
        "model": model.config.to_dict(), "train": cfg.to_dict(), "state": state.to_dict(),
        "data": [data.cache_dir.name, data.train.n_tokens, data.valid.n_tokens],
        "tokenizer": tokenizer.fingerprint(), "weights": weights.hexdigest(),
    }, sort_keys=True)
    if not world.agree(fingerprint):
        raise SagaError("the processes of this run disagree on the data, tokenizer, settings or "
                        "starting weights: every host needs the same stories at the same "
                        "--data_dir (and, to resume, the same checkpoint in --output_dir)")


@dataclass
class _Run:
    """What one training run carries from step to step (built by :func:`_setup`)."""

    data: PreparedData
    tokenizer: StoryTokenizer
    out: Path
    cfg: TrainConfig
    world: World
    callbacks: Sequence[Callback]
    model: StoryModel
    optimizer: optim.Optimizer
    state: ckpt.TrainingState
    train_step: Callable[[mx.array], tuple[mx.array, mx.array]]
    compiled_state: list[Any]
    batches: TrainingBatches
    sample_tokens: int
    average: WeightAverage | None = None
    evals_since_best: int = 0

    @property
    def context(self) -> int:
        return self.model.config.context_length

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.context


class _LossWindow:
    """The losses of the steps since the last report, kept on the device until read."""

    def __init__(self) -> None:
        self.restart(time.perf_counter())

    def restart(self, now: float) -> None:
        self.total, self.steps, self.start = mx.array(0.0), 0, now

    def add(self, loss: mx.array) -> None:
        self.total = self.total + loss
        self.steps += 1

    def resume(self, state: ckpt.TrainingState) -> None:
        """Continue the window a checkpoint was written in."""
        self.total, self.steps = mx.array(state.window_loss, mx.float32), state.window_steps

    def store(self, state: ckpt.TrainingState) -> None:
        """Record the window in ``state``, for the next checkpoint."""
        state.window_loss, state.window_steps = float(self.total.item()), self.steps


def _setup(data: PreparedData, tokenizer: StoryTokenizer, out: Path, model_config: ModelConfig,
           cfg: TrainConfig, resume_from: Path | None, init_from: Path | None,
           callbacks: Sequence[Callback], sample_tokens: int, world: World) -> _Run:
    """Build the model and optimizer (from ``resume_from`` if given, else starting from the
    weights file ``init_from`` if given) and the compiled step."""
    world.check_batch_size(cfg.batch_size)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    mx.random.seed(cfg.seed)
    model = StoryModel(model_config)
    model.compute_dtype = mx.bfloat16 if cfg.precision == "bfloat16" else mx.float32
    optimizer = make_optimizer(cfg)
    state = ckpt.TrainingState()
    if resume_from is not None:
        weights, _ = ckpt.load_arrays(resume_from / ckpt.WEIGHTS)
        ckpt.apply_weights(model, weights, resume_from / ckpt.WEIGHTS)
        optimizer.init(model.trainable_parameters())
        ckpt.load_optimizer_state(optimizer, resume_from)
        state, _ = ckpt.load_training_state(resume_from)
    else:
        if init_from is not None:
            weights, _ = ckpt.load_arrays(init_from)
            ckpt.apply_weights(model, weights, init_from)
        optimizer.init(model.trainable_parameters())
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if average is not None and resume_from is not None and (resume_from / EMA_FILE).is_file():
        average.load(resume_from / EMA_FILE)
    mx.eval(model.parameters(), optimizer.state, average.average if average else [])
    model.train()
    if world.is_distributed:
        _check_ranks_agree(world, data, tokenizer, model, cfg, state)
    train_step, compiled_state = build_train_step(model, optimizer, cfg.grad_clip,
                                                  group=world.group)
    return _Run(data, tokenizer, out, cfg, world, callbacks if world.is_main else (), model,
                optimizer, state, train_step, compiled_state,
                TrainingBatches(data.train, model_config.context_length, cfg.batch_size,
                                cfg.seed, world),
                sample_tokens, average)


def _start_info(run: _Run) -> dict[str, Any]:
    """The run's settings and sizes, as reported to ``Callback.on_start``."""
    return {
        "parameters": count_parameters(run.model), "model_config": run.model.config.to_dict(),
        "train_config": run.cfg.to_dict(), "start_step": run.state.step,
        "train_tokens": run.data.train.n_tokens, "valid_tokens": run.data.valid.n_tokens,
        "device": str(mx.default_device()), "output_dir": str(run.out),
        "world_size": run.world.size,
    }


def _step(run: _Run, batch: mx.array) -> tuple[mx.array, mx.array]:
    """Start one optimizer step on ``batch`` (without waiting for it); returns (loss, norm)."""
    cfg, world = run.cfg, run.world
    # Dropout noise depends only on the step (and differs between ranks).
    mx.random.seed((cfg.seed * 1_000_003 + run.state.step) * world.size + world.rank)
    loss, norm = run.train_step(batch)
    if run.average is not None:
        run.average.update(run.model)
    mx.async_eval(run.compiled_state, loss, norm, run.average.average if run.average else [])
    run.state.step += 1
    run.state.tokens_seen += run.tokens_per_step
    return loss, norm


def _report_step(run: _Run, window: _LossWindow, norm: mx.array, run_start: float) -> None:
    """Wait for the step, check the loss is finite and send the window's ``StepMetrics``."""
    state = run.state
    mean_loss = (window.total / window.steps).item()
    if not math.isfinite(mean_loss):
        raise SagaError(f"training diverged (loss is {mean_loss}) at step {state.step}; "
                        "try a lower --lr")
    now = time.perf_counter()
    state.elapsed_seconds = now - run_start
    metrics = StepMetrics(
        step=state.step, total_steps=run.cfg.steps, loss=mean_loss,
        lr=float(run.optimizer.learning_rate.item()),
        grad_norm=float(norm.item()),
        tokens_per_sec=window.steps * run.tokens_per_step / max(now - window.start, 1e-9),
        tokens_seen=state.tokens_seen, elapsed=state.elapsed_seconds,
    )
    for cb in run.callbacks:
        cb.on_step(metrics)
    window.restart(now)


def _evaluate(run: _Run) -> None:
    """Score the validation split, keep the best model, and report (with a sample story)."""
    model, state, step = run.model, run.state, run.state.step
    model.eval()
    val_loss, bpb = evaluate(model, run.data, run.tokenizer, run.context, run.cfg.batch_size,
                             run.cfg.eval_batches, world=run.world)
    is_best = state.best_val_loss is None or val_loss < state.best_val_loss
    if is_best:
        state.best_val_loss, state.best_step = val_loss, step
        if run.world.is_main:
            ckpt.save_model(run.out / BEST_DIR, model, run.tokenizer)
    run.evals_since_best = 0 if is_best else run.evals_since_best + 1
    ema_loss, ema_bpb = _evaluate_average(run) if run.average is not None else (None, None)
    sample = None
    if run.sample_tokens and run.world.is_main:
        options = SamplingOptions(max_tokens=run.sample_tokens, seed=step)
        sample = tell_story(model, run.tokenizer, StoryRequest(), options)
    model.train()
    for cb in run.callbacks:
        cb.on_eval(EvalMetrics(step, val_loss, bpb, is_best, sample, ema_loss, ema_bpb))


def _evaluate_average(run: _Run) -> tuple[float, float]:
    """Validation loss and bits per byte of the EMA weights; saves them in ``ema/`` at best."""
    average = run.average
    assert average is not None
    with average.applied(run.model):
        val_loss, bpb = evaluate(run.model, run.data, run.tokenizer, run.context,
                                 run.cfg.batch_size, run.cfg.eval_batches, world=run.world)
        if average.best_val_loss is None or val_loss < average.best_val_loss:
            average.best_val_loss = val_loss
            if run.world.is_main:
                ckpt.save_model(run.out / EMA_DIR, run.model, run.tokenizer)
    return val_loss, bpb


def _checkpoint(run: _Run) -> None:
    """Write a resumable checkpoint (rank 0 only) and prune the old ones."""
    if not run.world.is_main:
        return
    average = run.average
    path = ckpt.save_checkpoint(
        run.out, run.model, run.optimizer, run.tokenizer, run.state, run.cfg.to_dict(),
        write_extra=(lambda folder: average.save(folder / EMA_FILE)) if average else None)
    ckpt.prune_checkpoints(run.out, run.cfg.keep_checkpoints, run.state.best_step)
    for cb in run.callbacks:
        cb.on_checkpoint(run.state.step, path)


def _finish(run: _Run, reason: str) -> TrainSummary:
    """Evaluate and checkpoint the last step; unless stopped, write the best model as final."""
    state, cfg = run.state, run.cfg
    finished = reason != "stopped"
    if finished and state.step > 0 and (not cfg.eval_every or state.step % cfg.eval_every):
        _evaluate(run)
    _checkpoint(run)
    if finished and run.world.is_main:
        best = run.out / BEST_DIR
        if (best / ckpt.WEIGHTS).is_file():
            weights, _ = ckpt.load_arrays(best / ckpt.WEIGHTS)
            ckpt.apply_weights(run.model, weights, best / ckpt.WEIGHTS)
        ckpt.write_final_outputs(run.out, run.model, run.tokenizer)
    summary = TrainSummary(state.step, state.tokens_seen, state.elapsed_seconds,
                           state.best_val_loss, state.best_step, reason, str(run.out))
    for cb in run.callbacks:
        cb.on_end(summary)
    return summary


def run_training(
    data: PreparedData,
    tokenizer: StoryTokenizer,
    output_dir: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    resume_from: Path | None = None,
    init_from: Path | None = None,
    callbacks: Sequence[Callback] = (),
    stop_event: threading.Event | None = None,
    sample_tokens: int = 0,
    world: World | None = None,
) -> TrainSummary:
    """Train (or resume) a model on prepared data, writing checkpoints into ``output_dir``.

    Returns when ``train_config.steps`` are done, ``max_minutes`` have passed, validation stopped
    improving for ``patience`` evaluations, or ``stop_event`` is set (a checkpoint is written
    first, so ``resume_from`` can continue exactly). With ``sample_tokens`` each evaluation also
    reports a short sample story. A new run starts from random weights, or from the weights
    file ``init_from`` (a fine-tune: ``model_config`` must be that model's shape).

    ``world`` defaults to the one this process was launched into. In a distributed world
    ``batch_size`` is the global batch (a multiple of the number of ranks), every rank must
    pass the same data, settings and ``resume_from`` (checked), and only rank 0 calls the
    callbacks and writes files; a stop or time limit takes effect on all ranks at the same
    step, up to :attr:`StopVote.LAG` steps after it was requested.
    """
    cfg = train_config
    run = _setup(data, tokenizer, Path(output_dir), model_config, cfg, resume_from, init_from,
                 callbacks, sample_tokens, world or current_world())
    state = run.state
    for cb in run.callbacks:
        cb.on_start(_start_info(run))

    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
    vote = StopVote(run.world)
    reason = "completed"
    window = _LossWindow()
    window.resume(state)
    run_start = time.perf_counter() - state.elapsed_seconds
    batch = run.batches(state.step)
    while state.step < cfg.steps:
        decision = vote(stop_event is not None and stop_event.is_set(),
                        deadline is not None and time.monotonic() >= deadline)
        if decision is not None:
            reason = decision
            break
        loss, norm = _step(run, batch)
        window.add(loss)
        if state.step < cfg.steps:
            batch = run.batches(state.step)  # prepared while the device runs the step
        if state.step % LOG_EVERY == 0 or state.step == cfg.steps:
            _report_step(run, window, norm, run_start)
        if cfg.eval_every and state.step % cfg.eval_every == 0:
            _evaluate(run)
            if cfg.patience and run.evals_since_best >= cfg.patience:
                reason = "early stop"
                break
        if cfg.save_every and state.step % cfg.save_every == 0 and state.step < cfg.steps:
            window.store(state)
            _checkpoint(run)

    vote.settle()
    mx.eval(run.compiled_state)
    state.elapsed_seconds = time.perf_counter() - run_start
    window.store(state)
    return _finish(run, reason)
