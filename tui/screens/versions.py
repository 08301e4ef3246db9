"""The versions of a story: the one it grew from and every continued or branched version."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..library import SavedStory

TITLE_WIDTH = 40


class VersionsDialog(ModalScreen[int | None]):
    """A tree of versions (each under the one it came from); dismisses with the id of the
    chosen story or ``None`` (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, family: list[tuple[int, SavedStory]], current: int) -> None:
        super().__init__()
        self.family = family
        self.current = current

    def compose(self) -> ComposeResult:
        """The title, one line per version and a hint."""
        options = []
        for depth, story in self.family:
            marker = "  " * (depth - 1) + "└ " if depth else ""
            here = " ◂" if story.id == self.current else ""
            title = Content(story.title).truncate(TITLE_WIDTH - len(marker), ellipsis=True)
            options.append(Option(Content.assemble(
                marker, title.stylize("bold") if here else title,
                (f"  {story.local_date()}{here}", "dim")), id=str(story.id)))
        with Vertical(classes="dialog versions-dialog"):
            yield Static(f"Versions ({len(self.family)})", classes="dialog-title")
            yield OptionList(*options, id="versions")
            yield Static("enter: show this version · escape: close", classes="dialog-hint")

    def on_mount(self) -> None:
        """Start on the story the dialog was opened for."""
        versions = self.query_one("#versions", OptionList)
        ids = [story.id for _, story in self.family]
        versions.highlighted = ids.index(self.current) if self.current in ids else 0
        versions.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Show the chosen version in the library."""
        event.stop()
        self.dismiss(int(event.option.id or 0))

    def action_cancel(self) -> None:
        """Escape closes."""
        self.dismiss(None)
