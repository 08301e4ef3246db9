"""The status line under the story: state, token count and speed."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class GenerationStatus(Static):
    """``max length · 400 tokens · 310/s``-style line (fits 40 columns)."""

    def show(self, state: str, n_tokens: int | None = None,
             tokens_per_sec: float | None = None) -> None:
        """Show ``state`` and, when known, the count and speed."""
        parts = [state]
        if n_tokens is not None:
            parts.append(f"{n_tokens} token{'' if n_tokens == 1 else 's'}")
        if tokens_per_sec is not None:
            parts.append(f"{tokens_per_sec:.0f}/s")
        self.update(Content(" · ".join(parts)), layout=False)  # one line, fixed size
