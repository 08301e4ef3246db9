"""The numbers of the training dashboard: state, step, losses, learning rate, speed, ETA."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from saga_model import format_duration

from ..metrics import RunProgress

MAX_BAR = 20


def _bar(done: int, total: int, width: int) -> str:
    filled = width * min(done, total) // max(1, total)
    return "█" * filled + "░" * (width - filled)


class RunStats(Static):
    """A few short lines that fit beside the form at 80 columns."""

    def show(self, state: str, progress: RunProgress) -> None:
        """Render the run's state and its latest numbers."""
        lines = [state]
        p = progress
        if p.total_steps:
            head = f"step {p.step:,}/{p.total_steps:,} "
            tail = f" {100 * p.step // p.total_steps}%"
            room = self.content_size.width - len(head) - len(tail)
            bar = _bar(p.step, p.total_steps, min(MAX_BAR, room)) if room >= 5 else ""
            lines.append(head + bar + tail)
        if p.losses:
            val = f"{p.val_losses[-1]:.3f}" if p.val_losses else "–"
            best = f" (best {p.best_val_loss:.3f})" if p.best_val_loss is not None else ""
            lines.append(f"loss {p.losses[-1]:.3f} · val {val}{best}")
        if p.lr is not None and p.tokens_per_sec is not None:
            eta = p.eta_seconds
            lines.append(f"lr {p.lr:.2e} · {p.tokens_per_sec:,.0f} tok/s")
            lines.append(f"{format_duration(p.elapsed)} elapsed"
                         + (f" · ETA {format_duration(eta)}" if eta is not None else ""))
        self.update(Content("\n".join(lines)))

    def show_message(self, text: str) -> None:
        """A single message instead of numbers."""
        self.update(Content(text))
