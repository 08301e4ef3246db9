"""Stories as Markdown or plain text files, with safe file names derived from titles."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from saga_model.atomic import atomic_write_text

from .library import SavedStory

FORMATS = {"markdown": ".md", "text": ".txt"}
_MAX_NAME = 60


def safe_file_stem(title: str) -> str:
    """A file name stem from a title: letters, digits, ``-`` and ``_`` only, never empty.

    Path separators, ``..``, control characters and leading dots cannot survive, so the name
    always stays inside the export folder.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_title).strip("-_")[:_MAX_NAME].strip("-_")
    return stem.lower() or "story"


def render(story: SavedStory, fmt: str) -> str:
    """The story as ``markdown`` (title, settings, text) or ``text``."""
    details = [f"Settings: {story.settings_line()}"]
    if story.model:
        details.append(f"Model: {story.model}")
    details.append(f"Date: {story.local_date()}")
    if fmt == "markdown":
        meta = "\n".join(f"- {line}" for line in details)
        return f"# {story.title}\n\n{meta}\n\n{story.text.strip()}\n"
    if fmt == "text":
        return f"{story.title}\n{'=' * len(story.title)}\n\n{story.text.strip()}\n\n" + \
            "\n".join(details) + "\n"
    raise ValueError(f"unknown export format {fmt!r}")


def export_story(story: SavedStory, folder: Path, fmt: str) -> Path:
    """Write the story into ``folder`` under a fresh name derived from its title."""
    stem = safe_file_stem(story.title)
    suffix = FORMATS[fmt]
    target = folder / f"{stem}{suffix}"
    number = 1
    while target.exists():
        number += 1
        target = folder / f"{stem}-{number}{suffix}"
    atomic_write_text(target, render(story, fmt))
    target.chmod(0o666 & ~_umask())  # a normal file for the user, not the temp file's 0600
    return target


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
