"""What the screens ask of the app: a Protocol, so that screens need not import the app (which
imports them) to name the services' types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .library import SavedStory, StoryLibrary
    from .prefs import Preferences
    from .screens.export import ExportChoice
    from .session import StorySession
    from .speech import Speaker


class GrainServices(Protocol):
    """The app's services shared by the screens (:class:`tui.app.GrainApp` provides them)."""

    prefs: Preferences
    library: StoryLibrary
    session: StorySession

    @property
    def bedtime(self) -> bool:
        """Whether bedtime mode is on."""

    @property
    def speaking(self) -> bool:
        """Whether something is being read aloud."""

    def save_prefs(self) -> None:
        """Write the preferences (a failure is reported, never fatal)."""

    def key_for(self, binding_id: str) -> str:
        """The key that runs a binding, the user's keymap applied."""

    def speaker(self) -> Speaker | None:
        """The speaker for the current voice and speed, ``None`` without a speech engine."""

    def speak(self, sentences: list[str]) -> None:
        """Read sentences aloud after those already queued."""

    def read_aloud(self, text: str) -> None:
        """Read a whole story aloud, instead of anything being read."""

    def stop_speaking(self) -> None:
        """Stop reading aloud at once."""

    def copy_text(self, text: str, what: str) -> None:
        """Copy text to the clipboard and say what happened."""

    def export(self, story: SavedStory, choice: ExportChoice) -> None:
        """Write a story to a file in the chosen format."""

    def tell(self, story: SavedStory, how: str, end: int | None = None) -> None:
        """On the Story screen: tell a saved story ``again``, ``continue`` or ``branch`` it."""
