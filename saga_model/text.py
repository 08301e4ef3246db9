"""Cleaning story text (standard library only: generation uses it without the data pipeline)."""

from __future__ import annotations

import re
import unicodedata

from .prefix import END_OF_STORY

_MOJIBAKE = {
    "â€œ": "“", "â€\x9d": "”", "â€™": "’", "â€˜": "‘", "â€”": "—", "â€“": "–", "â€¦": "…",
}
_PUNCTUATION = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "…": "...", "\t": " "})
_CONTROL_LITERAL = re.compile(r"<\|[a-z_]+\|>")
#: Runs of spaces and single odd spaces, all of which become one plain space.
_SPACES = re.compile(r"[ \u00a0\u2000-\u200b]{2,}|[\u00a0\u2000-\u200b]")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_story(text: str) -> str:
    """Normalise one story: repair common mojibake, NFC, plain quotes, tidy whitespace.

    Control-token literals such as ``<|theme|>`` are removed so that text can never inject them.
    """
    for bad, good in _MOJIBAKE.items():
        text = text.replace(bad, good)
    text = unicodedata.normalize("NFC", text).translate(_PUNCTUATION)
    text = _CONTROL_LITERAL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.strip() for line in _SPACES.sub(" ", text).split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def split_stories(text: str) -> list[str]:
    """Split TinyStories-format text (stories separated by ``<|endoftext|>``) into stories."""
    return [part for part in text.split(END_OF_STORY) if part.strip()]

