"""Stories as Markdown, plain text or HTML files, with safe file names derived from titles."""

from __future__ import annotations

import html
import os
import re
import unicodedata
from pathlib import Path

from saga_model import atomic_write_text

from .library import SavedStory
from .models import lasting_label

FORMATS = {"markdown": ".md", "text": ".txt", "html": ".html"}
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ max-width: 34em; margin: 2em auto; padding: 0 1em; font: 1.25em/1.6 Georgia, serif;
       color: #2b2a33; background: #fbf8f1; }}
.meta {{ color: #77706a; font-size: 0.7em; padding-left: 1.2em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<ul class="meta">
{meta}
</ul>
{paragraphs}
</body>
</html>
"""
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
    """The story as ``markdown`` (title, settings, text), ``text`` or ``html`` (a page for
    a browser or an e-reader; everything from the story is escaped)."""
    details = [f"Settings: {story.settings_line()}"]
    if story.model:
        details.append(f"Model: {lasting_label(story.model)}")
    details.append(f"Date: {story.local_date()}")
    if fmt == "markdown":
        meta = "\n".join(f"- {line}" for line in details)
        return f"# {story.title}\n\n{meta}\n\n{story.text.strip()}\n"
    if fmt == "text":
        return f"{story.title}\n{'=' * len(story.title)}\n\n{story.text.strip()}\n\n" + \
            "\n".join(details) + "\n"
    if fmt == "html":
        paragraphs = "\n".join(
            "<p>" + "<br>\n".join(html.escape(line) for line in block.splitlines()) + "</p>"
            for block in re.split(r"\n\s*\n", story.text.strip()) if block.strip())
        meta = "\n".join(f"<li>{html.escape(line)}</li>" for line in details)
        return _PAGE.format(title=html.escape(story.title), meta=meta, paragraphs=paragraphs)
    raise ValueError(f"unknown export format {fmt!r}")


def fresh_path(folder: Path, title: str, suffix: str) -> Path:
    """A file in ``folder`` named after ``title`` that does not exist yet."""
    stem = safe_file_stem(title)
    target = folder / f"{stem}{suffix}"
    number = 1
    while target.exists():
        number += 1
        target = folder / f"{stem}-{number}{suffix}"
    return target


def export_story(story: SavedStory, folder: Path, fmt: str) -> Path:
    """Write the story into ``folder`` under a fresh name derived from its title."""
    target = fresh_path(folder, story.title, FORMATS[fmt])
    atomic_write_text(target, render(story, fmt))
    target.chmod(0o666 & ~_umask())  # a normal file for the user, not the temp file's 0600
    return target


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
