"""Shown instead of the app while the terminal is smaller than the layout needs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

MIN_WIDTH, MIN_HEIGHT = 80, 24


class TooSmallScreen(Screen[None]):
    """A plain message with the needed and the current size; it goes away on resize."""

    def compose(self) -> ComposeResult:
        """The message."""
        yield Static(id="too-small")

    def show_size(self, width: int, height: int) -> None:
        """Update the message for the current terminal size."""
        self.query_one("#too-small", Static).update(
            f"Terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT}, have {width}x{height}).\n"
            "Enlarge the window or zoom out; ctrl+q quits.")
