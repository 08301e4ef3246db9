"""Following a training run through its ``metrics.jsonl`` (never through training internals).

:class:`MetricsFollower` reads only the bytes appended since the last call;
:class:`RunProgress` folds the events (start/step/eval/checkpoint/end) into what the
dashboard shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MetricsFollower:
    """Reads new complete lines of a growing JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        """Events appended since the last call (a replaced file is read from its start)."""
        try:
            stat = self.path.stat()
        except OSError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset, self._partial = stat.st_ino, 0, b""
        if stat.st_size == self._offset:
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


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
    lr: float | None = None
    tokens_per_sec: float | None = None
    elapsed: float = 0.0
    best_val_loss: float | None = None
    sample: str | None = None
    sample_step: int | None = None
    end: dict[str, Any] | None = None

    def apply_all(self, events: list[dict[str, Any]]) -> bool:
        """Apply events in order; ``True`` if any of them changed the plotted series."""
        changed = False
        for event in events:
            try:
                changed |= self.apply(event)
            except (KeyError, TypeError, ValueError):
                continue  # a malformed line must not break the dashboard
        return changed

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; ``True`` if it changed the plotted series."""
        kind = event.get("event")
        if kind == "start":
            self.started, self.end = True, None
            self.parameters = int(event["parameters"])
            self.total_steps = int(event["train_config"]["steps"])
            self._rewind(int(event.get("start_step", 0)))
            return True
        if kind == "step":
            self.step, self.total_steps = int(event["step"]), int(event["total_steps"])
            self.lr, self.tokens_per_sec = float(event["lr"]), float(event["tokens_per_sec"])
            self.elapsed = float(event["elapsed"])
            self.steps.append(self.step)
            self.losses.append(float(event["loss"]))
            return True
        if kind == "eval":
            self.eval_steps.append(int(event["step"]))
            self.val_losses.append(float(event["val_loss"]))
            self.best_val_loss = min(self.val_losses)
            if event.get("sample"):
                self.sample, self.sample_step = str(event["sample"]), int(event["step"])
            return True
        if kind == "end":
            self.end = event
            self.step = int(event["step"])
            self.elapsed = float(event["elapsed"])
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
    def eta_seconds(self) -> float | None:
        """Estimated time left at the average pace so far."""
        if self.step <= 0 or self.end is not None or not self.total_steps:
            return None
        return (self.total_steps - self.step) * self.elapsed / self.step

    @property
    def stop_reason(self) -> str | None:
        """Why the run ended ("completed", "stopped", ...), ``None`` while it has not."""
        return None if self.end is None else str(self.end.get("stop_reason", "ended"))
