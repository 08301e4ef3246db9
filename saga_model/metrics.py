"""Training events: their types, the callback interface, and ``metrics.jsonl`` written and read.

The trainer hands each event to its :class:`Callback` objects; :class:`MetricsLogger` appends
it to ``metrics.jsonl`` as one JSON line, and :class:`MetricsReader` turns those lines back
into the same types, so another process (the terminal app's dashboard) can follow a run. A
line that is not a complete, known event is counted (:attr:`MetricsReader.bad_lines`), never
silently dropped. Pure standard library: reading a run loads no MLX or NumPy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeAlias


@dataclass
class RunStart:
    """A run (or a resumed run) begins: its settings and sizes (``info``, as written)."""

    info: dict[str, Any]

    @property
    def parameters(self) -> int:
        """The model's number of parameters."""
        return int(self.info["parameters"])

    @property
    def total_steps(self) -> int:
        """The step the run trains up to."""
        return int(self.info["train_config"]["steps"])

    @property
    def start_step(self) -> int:
        """The step it starts from (the checkpoint's, when resumed)."""
        return int(self.info.get("start_step", 0))


@dataclass
class StepMetrics:
    """Reported every few steps."""

    step: int
    total_steps: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_sec: float
    tokens_seen: int
    elapsed: float

    @property
    def remaining_seconds(self) -> float:
        """Estimated time to ``total_steps`` at the average pace so far."""
        return (self.total_steps - self.step) * self.elapsed / max(1, self.step)


@dataclass
class EvalMetrics:
    """Reported after each evaluation on the validation split."""

    step: int
    val_loss: float
    val_bpb: float
    is_best: bool
    sample: str | None = None
    #: The same figures for the EMA of the weights, when the run keeps one (``ema_decay``).
    ema_val_loss: float | None = None
    ema_val_bpb: float | None = None


@dataclass
class CheckpointSaved:
    """A checkpoint was written."""

    step: int
    path: str


@dataclass
class TrainSummary:
    """What a finished (or stopped) run achieved."""

    step: int
    tokens_seen: int
    elapsed: float
    best_val_loss: float | None
    best_step: int | None
    stop_reason: str
    output_dir: str


TrainingEvent: TypeAlias = RunStart | StepMetrics | EvalMetrics | CheckpointSaved | TrainSummary
#: The ``event`` field of each kind of line in ``metrics.jsonl``.
EVENT_NAMES: dict[type, str] = {RunStart: "start", StepMetrics: "step", EvalMetrics: "eval",
                                CheckpointSaved: "checkpoint", TrainSummary: "end"}


class Callback:
    """Receives training events; override the methods you need."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Called once with the run's settings, sizes and resume point."""

    def on_step(self, metrics: StepMetrics) -> None:
        """Called every few steps."""

    def on_eval(self, metrics: EvalMetrics) -> None:
        """Called after each validation pass."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """Called after a checkpoint is written."""

    def on_end(self, summary: TrainSummary) -> None:
        """Called once when the run finishes or stops."""


class MetricsLogger(Callback):
    """Appends every event as one JSON line to ``metrics.jsonl`` so other processes can follow."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, event: TrainingEvent) -> None:
        payload = event.info if isinstance(event, RunStart) else asdict(event)
        line = json.dumps({"event": EVENT_NAMES[type(event)], "time": time.time(), **payload})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def on_start(self, info: dict[str, Any]) -> None:
        self._write(RunStart(info))

    def on_step(self, metrics: StepMetrics) -> None:
        self._write(metrics)

    def on_eval(self, metrics: EvalMetrics) -> None:
        self._write(metrics)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._write(CheckpointSaved(step, str(path)))

    def on_end(self, summary: TrainSummary) -> None:
        self._write(summary)


_KINDS: dict[str, type] = {name: kind for kind, name in EVENT_NAMES.items()}


def parse_event(line: str | bytes) -> TrainingEvent:
    """One line of ``metrics.jsonl`` as the event it was written from; raises
    :class:`ValueError` for a line that is not a complete, known event."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = _KINDS.get(record.get("event"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(f"unknown event {record.get('event')!r}")
    if kind is RunStart:
        start = RunStart({k: v for k, v in record.items() if k not in ("event", "time")})
        try:
            _ = start.parameters, start.total_steps, start.start_step  # what readers use
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete start event: {exc!r}") from None
        return start
    values = {}
    for field in fields(kind):
        if field.name in record:
            values[field.name] = record[field.name]
            if not _fits(str(field.type), values[field.name]):
                raise ValueError(f"{record['event']} event: {field.name} is "
                                 f"{values[field.name]!r}")
    try:
        return kind(**values)
    except TypeError as exc:  # a field is missing
        raise ValueError(f"incomplete {record['event']} event: {exc}") from None


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                       "bool": (bool,)}


def _fits(annotation: str, value: Any) -> bool:
    """Whether a JSON value fits a field annotated ``int``, ``float | None``, ..."""
    allowed = [name.strip() for name in annotation.split("|")]
    if value is None:
        return "None" in allowed
    if isinstance(value, bool):
        return "bool" in allowed
    return any(isinstance(value, _TYPES.get(name, ())) for name in allowed)


class MetricsReader:
    """Follows a growing ``metrics.jsonl``: each call reads only the complete lines appended
    since the last one (a replaced or truncated file is read again from its start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_lines = 0  #: lines that were not a complete, known event
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""

    def read_new(self) -> list[TrainingEvent]:
        """The events appended since the last call (``[]`` while the file cannot be read)."""
        try:
            stat = self.path.stat()
        except OSError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset, self._partial = stat.st_ino, 0, b""
            self.bad_lines = 0
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
            if not line.strip():
                continue
            try:
                events.append(parse_event(line))
            except ValueError:
                self.bad_lines += 1
        return events


def read_metrics(path: Path) -> tuple[list[TrainingEvent], int]:
    """Every complete event of a ``metrics.jsonl``, and how many lines were not one."""
    reader = MetricsReader(path)
    events = reader.read_new()
    return events, reader.bad_lines
