"""The help screen: every key binding (the app hands over its own and its screens', the
user's keymap applied), the binding ids to use in ``[keymap]``, and file locations."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ..paths import exports_dir, library_file, prefs_file, runs_dir
from ..speech import find_engine

GENERAL = (
    ("tab / shift+tab", "Move to the next / previous field"),
    ("enter, space", "Open a list (theme, tone, …); enter in a Story field generates"),
    ("ctrl+p", "Command palette: every action by name"),
    ("ctrl+q", "Quit (training runs keep going)"),
)


def binding_rows(bindings: list[BindingType],
                 keymap: dict[str, str]) -> list[tuple[str, str]]:
    """``(keys, what they do [id])`` for the bindings that have a description."""
    rows = []
    for item in bindings:
        if not isinstance(item, Binding) or not item.description:
            continue
        keys = " / ".join(key.strip() for key in keymap.get(item.id or "", item.key).split(","))
        rows.append((keys, f"{item.tooltip or item.description}  [{item.id}]"))
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists the keys of every screen, then where the app keeps its files.

    ``sections`` are ``(title, bindings)`` pairs: the app's keys first, then each screen's.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "close", "Close", id="close-help"),
    ]

    def __init__(self, sections: list[tuple[str, list[BindingType]]],
                 keymap: dict[str, str]) -> None:
        super().__init__()
        (first, app_bindings), *screens = sections
        self.sections = [(first, [*GENERAL, *binding_rows(app_bindings, keymap)]),
                         *((title, binding_rows(bindings, keymap)) for title, bindings in screens)]

    def compose(self) -> ComposeResult:
        """A two-column table per section, then the file locations and the speech engine."""
        engine = find_engine()
        files = [("Preferences", str(prefs_file())), ("Library", str(library_file())),
                 ("Training runs", str(runs_dir())), ("Exports", str(exports_dir())),
                 ("Read aloud", f"{engine.name} ({engine.path})" if engine else "no speech "
                  "engine (install espeak-ng, or use macOS say)")]
        with VerticalScroll(classes="dialog help-dialog") as box:
            box.border_title = "Grain de Saga — keys"
            with Grid(classes="help-table"):
                for title, rows in [*self.sections, ("Files", files)]:
                    yield Static(Content.from_markup("[b $accent]$title[/]", title=title),
                                 classes="help-section")
                    for keys, text in rows:
                        yield Static(Content(keys), classes="help-keys")
                        yield Static(Content(text))
            yield Static(Content("Change a key in preferences.toml: [keymap] then id = \"key\", "
                                 "e.g. generate = \"ctrl+w\". escape, F1 or q closes this help."),
                         classes="dialog-hint")

    def action_close(self) -> None:
        """Back to the app."""
        self.dismiss(None)

