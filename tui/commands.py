"""Command palette entries (ctrl+p): the main actions of every screen, by name, and the
settings that have no key (reading speed, voice)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Protocol

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from .services import GrainServices


class PaletteHost(GrainServices, Protocol):
    """What the palette's entries call on the app, beyond the screens' services."""

    def show_mode(self, mode: str) -> None:
        """Switch to a main screen."""

    def action_help(self) -> None:
        """Show the help screen."""

    def action_toggle_theme(self) -> None:
        """Switch between the dark and the light theme."""

    def action_bedtime(self) -> None:
        """Switch bedtime mode on or off."""

    def ask_number(self, title: str, value: int, store: Callable[[str | None], None]) -> None:
        """Ask for a number and hand the answer to ``store``."""

    def set_reading_speed(self, text: str | None) -> None:
        """Bedtime reading speed typed by the user."""

    def set_speech_rate(self, text: str | None) -> None:
        """Read-aloud speed typed by the user."""

    def ask_voice(self) -> None:
        """Ask for the read-aloud voice."""


def app_commands(app: PaletteHost, screen: Screen[object]) -> Iterator[SystemCommand]:
    """Screen switching, help and theme, then the actions of ``screen``'s key bindings."""
    yield SystemCommand("Story screen", f"Write stories ({app.key_for('show-story')})",
                        partial(app.show_mode, "story"))
    yield SystemCommand("Training screen",
                        f"Train a model and watch it learn ({app.key_for('show-training')})",
                        partial(app.show_mode, "training"))
    yield SystemCommand("Library", f"Saved stories ({app.key_for('show-library')})",
                        partial(app.show_mode, "library"))
    yield SystemCommand("Help", f"Key bindings and file locations ({app.key_for('help')})",
                        app.action_help)
    yield SystemCommand("Toggle dark / light",
                        f"Switch between the dark and light theme ({app.key_for('toggle-theme')})",
                        app.action_toggle_theme)
    yield SystemCommand("Bedtime mode",
                        "Calm colours, wide margins, stories at reading speed "
                        f"({app.key_for('bedtime')})", app.action_bedtime)
    yield SystemCommand("Bedtime: reading speed…",
                        f"Words a minute in bedtime mode (now "
                        f"{app.prefs.bedtime.words_per_minute})",
                        partial(app.ask_number, "Bedtime reading speed (words a minute)",
                                app.prefs.bedtime.words_per_minute, app.set_reading_speed))
    yield SystemCommand("Read aloud: voice…",
                        f"The speech engine's voice (now {app.prefs.speech.voice or 'default'})",
                        app.ask_voice)
    yield SystemCommand("Read aloud: speed…",
                        f"Words a minute when reading aloud (now {app.prefs.speech.rate})",
                        partial(app.ask_number, "Read-aloud speed (words a minute)",
                                app.prefs.speech.rate, app.set_speech_rate))
    screen_name = getattr(screen, "PALETTE_GROUP", "")
    for binding in screen.BINDINGS:
        if isinstance(binding, Binding) and binding.description and screen_name:
            yield SystemCommand(f"{screen_name}: {binding.description}",
                                binding.tooltip or binding.description,
                                partial(screen.run_action, binding.action))
    for title, help_text, action in getattr(screen, "EXTRA_COMMANDS", ()):
        yield SystemCommand(f"{screen_name}: {title}", help_text,
                            partial(screen.run_action, action))
