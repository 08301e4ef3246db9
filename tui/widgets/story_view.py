"""The story pane: text that grows piece by piece and keeps its end in view."""

from __future__ import annotations

import re

from textual import events
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n")
#: While a story is written its scrollable height grows by this many lines at a time, and
#: takes the text's height again once no text came for SETTLE_SECONDS.
GROW_LINES = 16
SETTLE_SECONDS = 0.3


def with_paragraph_space(text: str) -> str:
    """``text`` with one blank line between paragraphs (the model ends a paragraph with a
    single newline, which would otherwise run the paragraphs together on screen)."""
    return _PARAGRAPH_BREAK.sub("\n\n", text)


class StoryView(ScrollView, can_focus=True):
    """Shows a story as it is written (plain text, never interpreted as markup).

    It draws its own lines: the paragraphs are wrapped once and kept, so a new piece re-wraps
    only the paragraph it adds to, and repaints the pane alone (a widget holding the whole
    text would re-wrap all of it and lay out the whole screen at every piece, which made the
    app show a story at half the model's speed).

    While a story is written the view follows its end until the user scrolls up; scrolling
    back to the bottom follows again. The scrollbar's column is always kept, so the text never
    re-wraps when the scrollbar appears. It can be maximized to read a story full screen.
    """

    DEFAULT_CSS = """
    StoryView {
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = ""
        self._shown = Content("")
        self._paragraphs: list[tuple[Content, list[Content]]] = []  # each with its lines
        self._lines: list[Content] = []
        self._wrap_width = 0
        self._follow = False  # a story is being written
        self._at_end = False  # ... and the view keeps its end in view (the user did not scroll up)
        self._moving = False  # the view itself is scrolling to the end
        self._settle: Timer | None = None

    @property
    def text(self) -> str:
        """The story shown so far ("" while a message is shown instead)."""
        return self._text

    @property
    def shown(self) -> Content:
        """What the pane shows (the story as displayed, or the message), with its styles."""
        return self._shown

    def clear(self) -> None:
        """Start an empty story, and follow its end as it grows."""
        self._text = ""
        self._show_start()
        self._follow = self._at_end = True
        self._show(Content(""), message=False)

    def append(self, piece: str) -> None:
        """Add text at the end (the view stays at the end unless the user scrolled up)."""
        self._text += piece
        self._show(Content(with_paragraph_space(self._text)), message=False)

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
        self._follow = self._at_end = False
        self.scroll_home(animate=False)

    def _show(self, content: Content, message: bool) -> None:
        self.set_class(message, "-message")
        self._shown = content
        self._layout_lines()

    # -- drawing -------------------------------------------------------------------------------

    def _layout_lines(self) -> None:
        """Wrap what is shown into lines, re-using the lines of unchanged paragraphs."""
        width = self.scrollable_content_region.width
        if width <= 0:
            return  # not laid out yet: on_resize wraps
        if width != self._wrap_width:
            self._paragraphs, self._wrap_width = [], width
        kept: list[tuple[Content, list[Content]]] = []
        for index, paragraph in enumerate(self._shown.split("\n", allow_blank=True)):
            known = self._paragraphs[index] if index < len(self._paragraphs) else None
            if known is not None and known[0].plain == paragraph.plain \
                    and known[0].spans == paragraph.spans:
                kept.append(known)
            else:
                kept.append((paragraph, paragraph.wrap(width) or [paragraph]))
        self._paragraphs = kept
        self._lines = [line for _, wrapped in kept for line in wrapped]
        height = len(self._lines)
        if self._follow and height > self.scrollable_content_region.height:
            height = -(-height // GROW_LINES) * GROW_LINES  # a new size lays out the screen
            if self._settle is not None:
                self._settle.stop()
            self._settle = self.set_timer(SETTLE_SECONDS, self._fit_size)
        if self.virtual_size != Size(width, height):
            self.virtual_size = Size(width, height)
        self.refresh()
        self._keep_end_in_view()

    def _fit_size(self) -> None:
        """No new text for a moment: the scrollable height is the text's again."""
        self._settle = None
        if self._wrap_width:
            self.virtual_size = Size(self._wrap_width, len(self._lines))
            self.call_after_refresh(self._keep_end_in_view)

    def _end_y(self) -> int:
        """The scroll position that shows the last line at the bottom of the pane."""
        return max(0, len(self._lines) - self.scrollable_content_region.height)

    def _keep_end_in_view(self) -> None:
        if self._follow and self._at_end and self.scroll_y != self._end_y():
            self._moving = True
            try:
                self.scroll_to(y=self._end_y(), animate=False, immediate=True)
            finally:
                self._moving = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """The user scrolled: up leaves the end, back to the end follows it again."""
        super().watch_scroll_y(old_value, new_value)
        if self._follow and not self._moving:
            self._at_end = new_value >= self._end_y()

    def watch_scroll_target_y(self, target: float) -> None:
        """The user started scrolling (an animated scroll sets its target first)."""
        if self._follow and not self._moving:
            self._at_end = target >= self._end_y()

    def on_resize(self, event: events.Resize) -> None:
        """A new width: wrap again."""
        self._layout_lines()

    def render_line(self, y: int) -> Strip:
        """One line of the pane (scrolled)."""
        index = self.scroll_offset.y + y
        width, style = self.scrollable_content_region.width, self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        segments = self._lines[index].render_segments(self.visual_style)
        return Strip(segments).crop_extend(0, width, style)
