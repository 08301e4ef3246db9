"""Choose the format (Markdown, text, HTML or audio) and folder of an exported story."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

FORMAT_OPTIONS = [("Markdown (.md)", "markdown"), ("Plain text (.txt)", "text"),
                  ("Web page (.html)", "html"), ("Audio, read aloud (say / espeak-ng)", "audio")]


@dataclass
class ExportChoice:
    """Where and how to export."""

    fmt: str
    folder: Path


class ExportDialog(ModalScreen[ExportChoice | None]):
    """Dismisses with an :class:`ExportChoice` (enter in the folder field) or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, folder: Path, fmt: str = "markdown") -> None:
        super().__init__()
        self.folder = folder
        self.fmt = fmt if fmt in {value for _, value in FORMAT_OPTIONS} else "markdown"

    def compose(self) -> ComposeResult:
        """Format, folder and a hint."""
        with Vertical(classes="dialog"):
            yield Static("Export story", classes="dialog-title")
            yield Select(FORMAT_OPTIONS, value=self.fmt, allow_blank=False, id="export-format")
            yield Input(str(self.folder), placeholder="folder", id="export-folder")
            yield Static("enter in the folder field: export · escape: cancel",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        """Start in the folder field: enter exports right away (in the last format used)."""
        self.query_one("#export-folder", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Export with the chosen format into the typed folder."""
        event.stop()
        folder = event.value.strip()
        if not folder:
            self.notify("Type a folder to export to.", severity="warning")
            return
        fmt = str(self.query_one("#export-format", Select).value)
        self.dismiss(ExportChoice(fmt, Path(folder).expanduser()))

    def action_cancel(self) -> None:
        """Escape cancels."""
        self.dismiss(None)
