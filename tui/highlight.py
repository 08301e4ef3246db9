"""Search matches marked in plain text, turned into styled text for Textual and Rich.

The library marks matches with two private-use characters; the functions here turn the
marked parts into styled spans and everything else into plain text, so a title or story that
looks like markup (``[b]``, ``[@click=...]``) is shown as typed, never interpreted.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

MARK_START = "\ue000"
MARK_END = "\ue001"
MATCH_STYLE = "bold reverse"


def _parts(marked: str) -> list[tuple[str, bool]]:
    """``(text, is_a_match)`` pieces of ``marked``, in order, without the marks."""
    parts = []
    for chunk in marked.split(MARK_START):
        match, end, rest = chunk.partition(MARK_END)
        parts.extend([(match, True), (rest, False)] if end else [(chunk, False)])
    return [(text, is_match) for text, is_match in parts if text]


def marked_content(marked: str) -> Content:
    """``marked`` as Textual content, the matches highlighted."""
    return Content.assemble(*((text, MATCH_STYLE) if is_match else text
                              for text, is_match in _parts(marked)))


def marked_text(marked: str, width: int) -> Text:
    """``marked`` as Rich text (for table cells) cut to ``width`` cells with an ellipsis."""
    text = Text.assemble(*((part, MATCH_STYLE) if is_match else part
                           for part, is_match in _parts(marked)))
    text.truncate(width, overflow="ellipsis")
    return text
