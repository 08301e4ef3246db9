"""The story pane: text that grows piece by piece and keeps the newest line in view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static


class StoryView(VerticalScroll, can_focus=True):
    """Shows a story as it is written (plain text, never interpreted as markup)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = ""

    def compose(self) -> ComposeResult:
        """A single text block."""
        yield Static(id="story-text")

    @property
    def text(self) -> str:
        """The story shown so far ("" while a message is shown instead)."""
        return self._text

    def clear(self) -> None:
        """Start an empty story."""
        self._text = ""
        self._show(Content(""), message=False)

    def append(self, piece: str) -> None:
        """Add text at the end and scroll to it."""
        self._text += piece
        self._show(Content(self._text), message=False)
        self.scroll_end(animate=False, immediate=False)

    def set_story(self, text: str, shown: Content | None = None) -> None:
        """Show a whole story at once, from its start (as ``shown``, e.g. with search matches
        highlighted, when given)."""
        self._text = text
        self._show(Content(text) if shown is None else shown, message=False)
        self.scroll_home(animate=False)

    def show_message(self, markup: str) -> None:
        """Show a hint (Textual markup) instead of a story."""
        self._text = ""
        self._show(Content.from_markup(markup), message=True)
        self.scroll_home(animate=False)

    def _show(self, content: Content, message: bool) -> None:
        text = self.query_one("#story-text", Static)
        text.set_class(message, "-message")
        text.update(content)
