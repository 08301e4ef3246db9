"""The form of the Training screen: which run to follow, and the settings of a new run."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Input, Label, Select

from saga_model import PRESETS

from ..prefs import TrainingSettings
from .story_settings import FormError

NO_RUNS = "no runs yet"


@dataclass
class NewRun:
    """What the form asks for a new run."""

    name: str
    settings: TrainingSettings


class TrainingForm(Grid):
    """Labelled fields, one per line; :meth:`read` validates them."""

    def __init__(self, settings: TrainingSettings, runs: list[str]) -> None:
        super().__init__(id="training-form")
        self.settings = settings
        self.runs = runs

    def compose(self) -> ComposeResult:
        """One label and one field per row."""
        s = self.settings
        yield Label("Follow")
        yield Select([(name, name) for name in self.runs], allow_blank=True,
                     value=self.runs[0] if self.runs else Select.NULL, prompt=NO_RUNS,
                     compact=True, disabled=not self.runs, id="run-select")
        yield Label("Name")
        yield Input(placeholder="new run name (auto)", compact=True, id="run-name")
        yield Label("Data")
        yield Input(s.data_dir, placeholder="folder or .txt of stories", compact=True,
                    id="data-dir")
        yield Label("Size")
        yield Select([(name, name) for name in PRESETS], allow_blank=False,
                     value=s.preset if s.preset in PRESETS else "seed", compact=True, id="preset")
        yield Label("Steps")
        yield Input(str(s.steps), type="integer", compact=True, id="steps")
        yield Label("Flags")
        yield Input(s.extra_args, placeholder="e.g. --batch_size 8", compact=True,
                    id="extra-args")

    def set_runs(self, runs: list[str], selected: str | None, unlisted: str = "") -> None:
        """Offer these runs to follow and select one (or show ``unlisted``, a run followed
        but no longer offered, in place of a selection)."""
        self.runs = runs
        select = self.query_one("#run-select", Select)
        select.prompt = unlisted or NO_RUNS
        select.set_options([(name, name) for name in runs])
        select.value = selected if selected in runs else Select.NULL
        select.disabled = not runs

    def followed(self) -> str | None:
        """The name of the run chosen to follow."""
        value = self.query_one("#run-select", Select).value
        return None if value == Select.NULL else str(value)

    def steps(self) -> int:
        """The steps field; raises :class:`FormError` unless it is a positive whole number."""
        text = self.query_one("#steps", Input).value.strip()
        try:
            steps = int(text)
        except ValueError:
            raise FormError("steps", f"Steps must be a whole number, not {text!r}") from None
        if steps <= 0:
            raise FormError("steps", "Steps must be at least 1")
        return steps

    def read(self) -> NewRun:
        """The settings of a new run; raises :class:`FormError` for an invalid field."""
        data_dir = self.query_one("#data-dir", Input).value.strip()
        if not data_dir:
            raise FormError("data-dir", "Choose the folder (or .txt file) of stories to learn "
                                        "from")
        preset = str(self.query_one("#preset", Select).value)
        extra = self.query_one("#extra-args", Input).value.strip()
        name = self.query_one("#run-name", Input).value.strip()
        return NewRun(name, TrainingSettings(data_dir, preset, self.steps(), extra))

    def show_run_settings(self, steps: int) -> None:
        """Show the step count of the followed run (what resume continues to)."""
        if steps > 0:
            self.query_one("#steps", Input).value = str(steps)
