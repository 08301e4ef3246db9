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

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        """Format, folder and a hint."""
        with Vertical(classes="dialog"):
            yield Static("Export story", classes="dialog-title")
            yield Select(FORMAT_OPTIONS, value="markdown", allow_blank=False, id="export-format")
            yield Input(str(self.folder), placeholder="folder", id="export-folder")
            yield Static("enter in the folder field: export · escape: cancel",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        """Start in the folder field: enter exports as Markdown right away."""
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
