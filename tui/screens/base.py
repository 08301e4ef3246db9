"""What every main screen shares: typed access to the app's services."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.notifications import SeverityLevel
from textual.screen import Screen

if TYPE_CHECKING:
    from ..services import GrainServices


class GrainScreen(Screen[None]):
    """A main screen of the app (Story, Training, Library)."""

    #: Prefix of this screen's entries in the command palette.
    PALETTE_GROUP: ClassVar[str] = ""
    #: Palette entries beyond the key bindings: (title, help, action name).
    EXTRA_COMMANDS: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    @property
    def grain(self) -> GrainServices:
        """The app's services (the running :class:`~tui.app.GrainApp`)."""
        return cast("GrainServices", self.app)

    def key(self, binding_id: str) -> str:
        """The key that runs the binding ``binding_id`` (after the user's keymap), e.g.
        ``ctrl+g``, for messages that tell the user what to press."""
        return self.grain.key_for(binding_id)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Show a notification; plain text unless ``markup`` is asked for (messages quote
        paths, titles and errors)."""
        self.app.notify(message, title=title, severity=severity, timeout=timeout,
                        markup=markup)
