"""The settings pane of the Story screen: model, theme, tone, genre, characters, sampling."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Input, Label, Select

from saga_model import GENRES, THEMES, TONES

from ..models import ModelChoice
from ..prefs import StorySettings

ANY = ""


class FormError(ValueError):
    """A field holds an invalid value; ``field_id`` names it so the UI can focus it."""

    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id = field_id


def _choices(values: Iterable[str]) -> list[tuple[str, str]]:
    return [("any", ANY), *((value, value) for value in values)]


def _number(text: str, field_id: str, label: str, kind: type[float] | type[int]) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise FormError(field_id, f"{label} must be a number, not {text!r}") from None


class StorySettingsForm(Grid):
    """Labelled fields, one per line; :meth:`read` validates them into :class:`StorySettings`."""

    def __init__(self, settings: StorySettings, models: list[ModelChoice],
                 model: Path | None) -> None:
        super().__init__(id="story-settings")
        self.settings = settings
        self.models = models
        self.model = model

    def compose(self) -> ComposeResult:
        """One label and one field per row."""
        s = self.settings
        yield Label("Model")
        # "no model yet" only while there is none: never a choice beside real models.
        yield Select(self._model_options(), value=self._model_value(),
                     allow_blank=not self.models, prompt="no model yet", compact=True,
                     disabled=not self.models, id="model")
        for field_id, values in (("theme", THEMES), ("tone", TONES), ("genre", GENRES)):
            current = getattr(s, field_id)
            yield Label(field_id.capitalize())
            yield Select(_choices(values), value=current if current in values else ANY,
                         allow_blank=False, compact=True, id=field_id)
        yield Label("Characters")
        yield Input(s.characters, placeholder="Alice, Bob", compact=True, id="characters")
        yield Label("Opening")
        yield Input(s.opening, placeholder="Once upon a time…", compact=True, id="opening")
        yield Label("Temperature")
        yield Input(str(s.temperature), type="number", compact=True, id="temperature")
        yield Label("Top-p")
        yield Input(str(s.top_p), type="number", compact=True, id="top_p")
        yield Label("Max tokens")
        yield Input(str(s.max_tokens), type="integer", compact=True, id="max_tokens")
        yield Label("Seed")
        yield Input("" if s.seed is None else str(s.seed), type="integer",
                    placeholder="random", compact=True, id="seed")

    def _model_options(self) -> list[tuple[str, str]]:
        return [(choice.label, str(choice.path)) for choice in self.models]

    def _model_value(self) -> str | object:
        known = [str(choice.path) for choice in self.models]
        if self.model is not None and str(self.model) in known:
            return str(self.model)
        return known[0] if known else Select.NULL

    def set_models(self, models: list[ModelChoice], model: Path | None) -> None:
        """Offer these models and select ``model`` (if it is one of them)."""
        self.models, self.model = models, model
        select = self.query_one("#model", Select)
        select._allow_blank = not models  # Textual has no public setter for it
        select.set_options(self._model_options())
        select.value = self._model_value()
        select.disabled = not models

    def model_path(self) -> Path | None:
        """The chosen model folder, ``None`` when there is none."""
        value = self.query_one("#model", Select).value
        return None if value == Select.NULL else Path(str(value))

    def _text(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def read(self) -> StorySettings:
        """The current values; raises :class:`FormError` for a field that is not valid."""
        values = {}
        for field_id in ("theme", "tone", "genre"):
            value = self.query_one(f"#{field_id}", Select).value
            values[field_id] = ANY if value == Select.NULL else str(value)
        seed_text = self._text("seed")
        return StorySettings(
            **values,
            characters=self._text("characters"),
            opening=self._text("opening"),
            temperature=float(_number(self._text("temperature"), "temperature",
                                      "Temperature", float)),
            top_p=float(_number(self._text("top_p"), "top_p", "Top-p", float)),
            max_tokens=int(_number(self._text("max_tokens"), "max_tokens", "Max tokens", int)),
            seed=int(_number(seed_text, "seed", "Seed", int)) if seed_text else None,
        )
