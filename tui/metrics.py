"""What the dashboard knows about a training run, from its ``metrics.jsonl`` (read through
:class:`saga_model.MetricsReader`, as the same types the trainer writes) and its process.

:class:`RunProgress` folds the events into the dashboard's series and numbers;
:func:`run_state` says where the run stands, the one place that weighs the events, the
trainer process and its log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from saga_model import EvalMetrics, RunStart, StepMetrics, TrainSummary

if TYPE_CHECKING:
    from saga_model import TrainingEvent

    from .runs import TrainingRun


@dataclass
class RunProgress:
    """Everything the dashboard knows about a run, built from its events."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    started: bool = False
    parameters: int | None = None
    step: int = 0
    total_steps: int = 0
    last_step: StepMetrics | None = None  # the latest step event
    best_val_loss: float | None = None
    sample: str | None = None
    sample_step: int | None = None
    end: TrainSummary | None = None

    def apply_all(self, events: list[TrainingEvent]) -> bool:
        """Apply events in order; ``True`` if any of them changed the plotted series."""
        changed = False
        for event in events:
            changed |= self.apply(event)
        return changed

    def apply(self, event: TrainingEvent) -> bool:
        """Apply one event; ``True`` if it changed the plotted series."""
        if isinstance(event, RunStart):
            self.started, self.end = True, None
            self.parameters, self.total_steps = event.parameters, event.total_steps
            self._rewind(event.start_step)
            return True
        if isinstance(event, StepMetrics):
            self.last_step = event
            self.step, self.total_steps = event.step, event.total_steps
            self.steps.append(event.step)
            self.losses.append(event.loss)
            return True
        if isinstance(event, EvalMetrics):
            self.eval_steps.append(event.step)
            self.val_losses.append(event.val_loss)
            self.best_val_loss = min(self.val_losses)
            if event.sample:
                self.sample, self.sample_step = event.sample, event.step
            return True
        if isinstance(event, TrainSummary):
            self.end = event
            self.step = event.step
        return False

    def _rewind(self, start_step: int) -> None:
        """A resumed run restarts at its checkpoint: forget points logged after it."""
        keep = [i for i, s in enumerate(self.steps) if s <= start_step]
        self.steps = [self.steps[i] for i in keep]
        self.losses = [self.losses[i] for i in keep]
        keep = [i for i, s in enumerate(self.eval_steps) if s <= start_step]
        self.eval_steps = [self.eval_steps[i] for i in keep]
        self.val_losses = [self.val_losses[i] for i in keep]
        self.best_val_loss = min(self.val_losses) if self.val_losses else None
        self.step = start_step

    @property
    def lr(self) -> float | None:
        """The latest learning rate."""
        return self.last_step.lr if self.last_step is not None else None

    @property
    def tokens_per_sec(self) -> float | None:
        """The latest training speed."""
        return self.last_step.tokens_per_sec if self.last_step is not None else None

    @property
    def elapsed(self) -> float:
        """Training time so far (at the end, the run's total)."""
        if self.end is not None:
            return self.end.elapsed
        return self.last_step.elapsed if self.last_step is not None else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Estimated time left (:attr:`saga_model.StepMetrics.remaining_seconds`)."""
        if self.end is not None or self.last_step is None:
            return None
        return self.last_step.remaining_seconds

    @property
    def stop_reason(self) -> str | None:
        """Why the run ended ("completed", "stopped", ...), ``None`` while it has not."""
        return None if self.end is None else self.end.stop_reason


RunKind = Literal["preparing", "training", "paused", "finished", "failed", "interrupted",
                  "idle"]


@dataclass(frozen=True)
class RunState:
    """Where a run stands: ``kind``, a few words for the dashboard, and the trainer's error
    line when it failed."""

    kind: RunKind
    text: str
    failure: str | None = None


def run_state(run: TrainingRun, progress: RunProgress, running: bool,
              bad_lines: int = 0) -> RunState:
    """Where ``run`` stands, from its events, whether its trainer is ``running`` and its log
    (``bad_lines`` of its ``metrics.jsonl`` that could not be read are mentioned)."""
    state = _state(run, progress, running)
    if bad_lines:
        lines = "line" if bad_lines == 1 else "lines"
        return RunState(state.kind, f"{state.text} · {bad_lines} unreadable metrics {lines}",
                        state.failure)
    return state


def _state(run: TrainingRun, progress: RunProgress, running: bool) -> RunState:
    if running:
        return (RunState("training", "training") if progress.started
                else RunState("preparing", "preparing data…"))
    reason = progress.stop_reason
    if reason == "stopped":
        return RunState("paused", "paused · ctrl+r resumes")
    if reason is not None:
        return RunState("finished", f"finished ({reason})")
    failure = run.failure()
    if failure:
        return RunState("failed", f"failed: {failure}", failure)
    if run.has_checkpoints():
        return RunState("interrupted", "interrupted · ctrl+r resumes")
    return RunState("idle", "not running")
