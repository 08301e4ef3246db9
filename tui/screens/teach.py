"""The "Teach it your stories" dialog of the Training screen.

The user picks a folder of their own stories, sees how many stories and tokens it holds,
chooses the model to start from and a name for the result, and the Training screen starts
``grain-train --init_from`` as a run of that name (see docs/teach.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from saga_model import TOKENIZER_FILE, SagaError

from ..models import ModelChoice
from ..runs import TEACH_FLAGS, RunError, parse_extra_flags, validate_run_name

#: Fewer stories than this teach little; the dialog says so (but lets the user go on).
FEW_STORIES = 10
INTRO = ("Teach the model your own world — names, pets, places — from a folder of your "
         "stories: .txt or .md files, one story each, 10 or more. It keeps its voice and "
         "tokenizer; a few minutes on a laptop.")


@dataclass(frozen=True)
class TeachRequest:
    """What the dialog asks for: the stories, the model to start from and the new name."""

    data_dir: Path
    base: Path
    name: str
    extra: list[str]


def summarize_stories(folder: Path, base: Path) -> str:
    """"N stories, T tokens" of ``folder`` as the base model's tokenizer counts them, or why
    the folder cannot be used."""
    from saga_model import StoryTokenizer, read_stories

    try:
        stories = read_stories(folder)
        tokenizer = StoryTokenizer.load(base / TOKENIZER_FILE)
    except SagaError as exc:
        return str(exc)
    if not stories:
        return f"no stories in {folder}"
    tokens = sum(len(ids) for ids in tokenizer.encode_batch(stories))
    few = f" (fewer than {FEW_STORIES}: add more to teach it well)" if len(
        stories) < FEW_STORIES else ""
    return f"{len(stories):,} stories, {tokens:,} tokens{few}"


class TeachDialog(ModalScreen[TeachRequest | None]):
    """Asks for a stories folder, a base model and a name; dismisses with a TeachRequest."""

    DEFAULT_CSS = """
    .teach-dialog { width: 76; }
    #teach-form { grid-size: 2; grid-columns: 11 1fr; grid-rows: auto; height: auto;
                  margin-bottom: 1; }
    #teach-summary { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel-teach"),
    ]

    def __init__(self, bases: list[ModelChoice], folder: str = "") -> None:
        super().__init__()
        self.bases = bases
        self.folder = folder

    def compose(self) -> ComposeResult:
        """Intro, the fields, the stories summary and the buttons."""
        with Vertical(classes="dialog teach-dialog"):
            yield Static("Teach it your stories", classes="dialog-title")
            yield Static(INTRO, classes="dialog-text")
            with Grid(id="teach-form"):
                yield Label("Stories")
                yield Input(self.folder, placeholder="folder of .txt/.md stories",
                            compact=True, id="teach-folder")
                yield Label("")
                yield Static("", id="teach-summary")
                yield Label("Start from")
                yield Select([(c.label, c.path) for c in self.bases], allow_blank=False,
                             compact=True, id="teach-base")
                yield Label("Name")
                yield Input(time.strftime("taught-%Y%m%d-%H%M"), compact=True,
                            id="teach-name")
                yield Label("Flags")
                yield Input(placeholder="optional, e.g. --steps 200", compact=True,
                            id="teach-extra")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Teach", variant="primary", id="teach-start")
                yield Button("Cancel", id="teach-cancel")

    def on_mount(self) -> None:
        """Start in the folder field; count what it already names."""
        self.query_one("#teach-folder", Input).focus()
        self._count()

    @on(Input.Changed, "#teach-folder")
    @on(Select.Changed, "#teach-base")
    def _count(self) -> None:
        folder = self.query_one("#teach-folder", Input).value.strip()
        summary = self.query_one("#teach-summary", Static)
        if not folder or not self.bases:
            summary.update("" if self.bases else "no model to start from")
            return
        summary.update("counting…")
        self._summarize(Path(folder).expanduser(), self._base())

    @work(thread=True, exclusive=True)
    def _summarize(self, folder: Path, base: Path) -> None:
        text = summarize_stories(folder, base)
        self.app.call_from_thread(self.query_one("#teach-summary", Static).update, text)

    def _base(self) -> Path:
        value = self.query_one("#teach-base", Select).value
        return value if isinstance(value, Path) else self.bases[0].path

    def _request(self) -> TeachRequest:
        folder = self.query_one("#teach-folder", Input).value.strip()
        if not folder:
            raise RunError("choose the folder of your stories first")
        data_dir = Path(folder).expanduser()
        if not data_dir.exists():
            raise RunError(f"stories folder not found: {data_dir}")
        if not self.bases:
            raise RunError("there is no model to start from")
        name = validate_run_name(self.query_one("#teach-name", Input).value)
        extra = parse_extra_flags(self.query_one("#teach-extra", Input).value, TEACH_FLAGS)
        return TeachRequest(data_dir, self._base(), name, extra)

    @on(Button.Pressed, "#teach-start")
    @on(Input.Submitted)
    def _teach(self) -> None:
        try:
            request = self._request()
        except RunError as exc:
            self.notify(str(exc), severity="error")
            return
        self.dismiss(request)

    @on(Button.Pressed, "#teach-cancel")
    def action_cancel(self) -> None:
        """Close without teaching."""
        self.dismiss(None)
