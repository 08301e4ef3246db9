"""Choose the sentence a new version of a story branches from."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..speech import sentence_spans


class BranchDialog(ModalScreen[int | None]):
    """Lists a story's sentences; dismisses with the position in the text where the chosen
    sentence ends (the new version keeps everything before it) or ``None`` (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.story_title = title
        self.text = text
        self.ends = [end for _, end in sentence_spans(text)]

    def compose(self) -> ComposeResult:
        """The title, one line per sentence (the last one selected) and a hint."""
        options = [Option(Content(f"{number:>2}. {' '.join(self.text[start:end].split())}"))
                   for number, (start, end) in enumerate(sentence_spans(self.text), start=1)]
        with Vertical(classes="dialog branch-dialog"):
            yield Static(Content.from_markup("Branch “$title” after which sentence?",
                                             title=self.story_title), classes="dialog-title")
            yield OptionList(*options, id="sentences")
            yield Static("enter: write a new version from there · escape: cancel",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        """Start on the last sentence: the whole story, like "continue"."""
        sentences = self.query_one("#sentences", OptionList)
        sentences.highlighted = len(self.ends) - 1 if self.ends else None
        sentences.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Branch after the chosen sentence."""
        event.stop()
        self.dismiss(self.ends[event.option_index])

    def action_cancel(self) -> None:
        """Escape cancels."""
        self.dismiss(None)
