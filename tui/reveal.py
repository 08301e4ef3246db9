"""Bedtime pacing: streamed text held back and let out a word at a time, at reading speed."""

from __future__ import annotations

import re

_WORD = re.compile(r"\s*\S+")


class WordReveal:
    """Text waiting to be shown. :meth:`next_word` gives the next whole word (with the spaces
    before it); a word still being streamed waits until it is complete."""

    def __init__(self) -> None:
        self._pending = ""

    @property
    def pending(self) -> str:
        """The text not shown yet."""
        return self._pending

    def push(self, text: str) -> None:
        """Add streamed text."""
        self._pending += text

    def take_all(self) -> str:
        """Everything that waits, at once."""
        text, self._pending = self._pending, ""
        return text

    def next_word(self, complete: bool) -> str:
        """The next word to show ("" if none is ready); ``complete`` says no more text will
        come, so the last word and trailing spaces can go too."""
        match = _WORD.match(self._pending)
        if match is None:
            word = self._pending if complete else ""
        elif match.end() < len(self._pending) or complete:
            word = match.group()
        else:
            word = ""
        self._pending = self._pending[len(word) :]
        return word
