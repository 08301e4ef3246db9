"""The top line: app name and the screens, the current one highlighted (keys and clicks)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

#: (mode name, key, label) of the main screens, in display order.
SCREENS: tuple[tuple[str, str, str], ...] = (
    ("story", "F2", "Story"),
    ("training", "F3", "Training"),
    ("library", "F4", "Library"),
)


class NavBar(Horizontal):
    """One line naming the app and its screens; each screen name can be clicked."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        """The screen names on the left, the help keys on the right."""
        parts = [" [b]Grain de Saga[/b] "]
        for mode, key, label in SCREENS:
            text = f" {key} {label} "
            if mode == self.current:
                parts.append(f"[b $text on $accent]{text}[/]")
            else:
                parts.append(f"[@click=app.switch_mode('{mode}')]{text}[/]")
        yield Static("".join(parts), id="nav-screens")
        yield Static("F1 Help  ^p Commands ", id="nav-help")
