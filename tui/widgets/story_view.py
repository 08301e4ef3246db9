"""The story pane: text that grows piece by piece and keeps its end in view."""

from __future__ import annotations

import re
from typing import Any

from textual import events
from textual.content import Content
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n")


def with_paragraph_space(text: str) -> str:
    """``text`` with one blank line between paragraphs (the model ends a paragraph with a
    single newline, which would otherwise run the paragraphs together on screen)."""
    return _PARAGRAPH_BREAK.sub("\n\n", text)


class StoryView(ScrollView, can_focus=True):
    """Shows a story as it is written (plain text, never interpreted as markup).

    It draws its own lines: the paragraphs are wrapped once and kept, so a new piece re-wraps
    only the paragraph it adds to, and repaints the pane alone (a widget holding the whole
    text would re-wrap all of it and lay out the whole screen at every piece, which made the
    app show a story at half the model's speed). Its scrollable height follows the text
    without laying out the screen either (see :meth:`_set_height`).

    While a story is written the view follows its end until the user scrolls up; scrolling
    back to the bottom follows again. The scrollbar is always there, its track the colour of
    the pane (only its thumb shows, when there is something to scroll): the text never re-wraps
    and the screen is never laid out again for it. It can be maximized to read a story full
    screen.
    """

    DEFAULT_CSS = """
    StoryView {
        overflow-y: scroll;
        overflow-x: hidden;
        scrollbar-background: transparent;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = ""
        self._shown = Content("")
        self._paragraphs: list[tuple[Content, list[Content]]] = []  # each with its lines
        self._lines: list[Content] = []
        self._strips: dict[int, tuple[Content, tuple[Any, ...], Strip]] = {}  # drawn lines
        self._line_style: tuple[Any, ...] = (0, None, None)  # width and styles of this frame
        self._wrap_width = 0
        self._follow = False  # a story is being written
        self._at_end = False  # ... and the view keeps its end in view (the user did not scroll up)
        self._moving = False  # the view itself is scrolling to the end

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
        self._set_height(Size(width, len(self._lines)))
        self.refresh()
        self._keep_end_in_view()

    def _set_height(self, size: Size) -> None:
        """Make ``size`` the scrollable size, without laying out the screen.

        Setting ``virtual_size`` lays out the whole screen (every widget of the form), which
        took 20 ms a time on 2 cores beside the model; the pane's size on screen does not
        depend on its text, so only its scrollbar (and the largest scroll offset) follows.
        """
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)

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

    def render_lines(self, crop: Region) -> list[Strip]:
        """The pane's lines in ``crop``; the pane's styles are looked up once for them all."""
        self._line_style = (self.scrollable_content_region.width, self.visual_style,
                            self.rich_style)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """One line of the pane (scrolled); a line drawn before is drawn again only if its text
        or the pane's style changed (the pane repaints whole as it scrolls to follow a story)."""
        index = self.scroll_offset.y + y
        width, visual_style, style = self._line_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        line = self._lines[index]
        known = self._strips.get(index)
        if known is not None and known[1] == self._line_style and (
                known[0].plain, known[0].spans) == (line.plain, line.spans):
            return known[2]
        strip = Strip(line.render_segments(visual_style)).crop_extend(0, width, style)
        self._strips[index] = (line, self._line_style, strip)
        return strip
