"""Command palette entries (ctrl+p): the main actions of every screen, by name."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

if TYPE_CHECKING:
    from .app import GrainApp


def app_commands(app: GrainApp, screen: Screen[object]) -> Iterator[SystemCommand]:
    """Screen switching, help and theme, then the actions of ``screen``'s key bindings."""
    yield SystemCommand("Story screen", "Write stories (F2)", partial(app.show_mode, "story"))
    yield SystemCommand("Training screen", "Train a model and watch it learn (F3)",
                        partial(app.show_mode, "training"))
    yield SystemCommand("Library", "Saved stories (F4)", partial(app.show_mode, "library"))
    yield SystemCommand("Help", "Key bindings and file locations (F1)", app.action_help)
    yield SystemCommand("Toggle dark / light", "Switch between the dark and light theme (ctrl+t)",
                        app.action_toggle_theme)
    screen_name = getattr(screen, "PALETTE_GROUP", "")
    for binding in screen.BINDINGS:
        if isinstance(binding, Binding) and binding.description and screen_name:
            yield SystemCommand(f"{screen_name}: {binding.description}",
                                binding.tooltip or binding.description,
                                partial(screen.run_action, binding.action))
    for title, help_text, action in getattr(screen, "EXTRA_COMMANDS", ()):
        yield SystemCommand(f"{screen_name}: {title}", help_text,
                            partial(screen.run_action, action))
