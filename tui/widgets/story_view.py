"""The story pane: text that grows piece by piece and keeps its end in view."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n")


def with_paragraph_space(text: str) -> str:
    """``text`` with one blank line between paragraphs (the model ends a paragraph with a
    single newline, which would otherwise run the paragraphs together on screen)."""
    return _PARAGRAPH_BREAK.sub("\n\n", text)


class StoryView(VerticalScroll, can_focus=True):
    """Shows a story as it is written (plain text, never interpreted as markup).

    While a story is written the view follows its end, also when the text re-wraps (the
    scrollbar appearing narrows it), until the user scrolls up; scrolling back to the bottom
    follows again. It can be maximized to read a story full screen.
    """

    ALLOW_MAXIMIZE = True

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = ""
        self._follow = False  # a story is being written: keep its end in view

    def compose(self) -> ComposeResult:
        """A single text block."""
        yield Static(id="story-text")

    @property
    def text(self) -> str:
        """The story shown so far ("" while a message is shown instead)."""
        return self._text

    def clear(self) -> None:
        """Start an empty story, and follow its end as it grows."""
        self._text = ""
        self._show(Content(""), message=False)
        self._show_start()
        self._follow = True

    def append(self, piece: str) -> None:
        """Add text at the end (the view stays at the end unless the user scrolled up)."""
        self._text += piece
        self._show(Content(with_paragraph_space(self._text)), message=False)
        if self._follow and not self.is_anchored:
            self.call_after_refresh(self._anchor_once_overflowing)

    def _anchor_once_overflowing(self) -> None:
        """Anchor the view to its end as soon as the text is taller than the pane: from then
        on every layout (a new line, the text re-wrapping beside a new scrollbar) keeps the
        end in view until the user scrolls up. (Anchored earlier, a short text would be drawn
        at the bottom of the pane.)"""
        if self._follow and not self.is_anchored and self.max_scroll_y > 0:
            self.anchor()

    def set_story(self, text: str, shown: Content | None = None) -> None:
        """Show a whole story at once, from its start (as ``shown``, e.g. with search matches
        highlighted, when given)."""
        self._text = text
        self._show(Content(with_paragraph_space(text)) if shown is None else shown,
                   message=False)
        self._show_start()

    def show_message(self, markup: str) -> None:
        """Show a hint (Textual markup) instead of a story."""
        self._text = ""
        self._show(Content.from_markup(markup), message=True)
        self._show_start()

    def _show_start(self) -> None:
        self._follow = False
        self.anchor(False)
        self.scroll_home(animate=False)

    def _show(self, content: Content, message: bool) -> None:
        text = self.query_one("#story-text", Static)
        text.set_class(message, "-message")
        text.update(content)
