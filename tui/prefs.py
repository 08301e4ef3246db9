"""User preferences: story settings, model, theme, training form, read aloud, bedtime, keys.

Read with :mod:`tomllib`, written atomically with :mod:`tomli_w`. A file that cannot be read
is moved aside (never deleted) and the app starts from defaults with a message for the user.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from saga_model import SagaError, SamplingOptions, atomic_write_text

_SAMPLING = SamplingOptions()  # the model package's defaults, the only ones
DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"


def _within(low: int, high: int) -> dict[str, tuple[int, int]]:
    """Field metadata: the value must lie in ``[low, high]``."""
    return {"range": (low, high)}


@dataclass
class StorySettings:
    """The story form; empty strings mean "any"."""

    theme: str = ""
    tone: str = ""
    genre: str = ""
    characters: str = ""
    opening: str = ""
    temperature: float = _SAMPLING.temperature
    top_p: float = _SAMPLING.top_p
    max_tokens: int = _SAMPLING.max_tokens
    seed: int | None = None


@dataclass
class TrainingSettings:
    """The training form."""

    data_dir: str = ""
    preset: str = "seed"
    steps: int = 2000
    extra_args: str = ""


@dataclass
class SpeechSettings:
    """Reading stories aloud: on or off, the engine's voice ("" = its default) and speed."""

    enabled: bool = False
    voice: str = ""
    rate: int = field(default=150, metadata=_within(60, 500))  # words per minute


@dataclass
class BedtimeSettings:
    """Bedtime mode: calm colours, wide margins, text revealed at reading speed."""

    enabled: bool = False
    words_per_minute: int = field(default=140, metadata=_within(30, 2000))


@dataclass
class Preferences:
    """Everything the app remembers between sessions.

    ``keymap`` maps binding ids to keys (the ``[keymap]`` table), e.g. ``generate = "ctrl+w"``;
    the app checks the ids and keys (see :mod:`tui.keymap`).
    """

    theme: str = DARK_THEME
    model: str = ""
    export_format: str = "markdown"  # the export dialog's last choice
    story: StorySettings = field(default_factory=StorySettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    bedtime: BedtimeSettings = field(default_factory=BedtimeSettings)
    keymap: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadedPreferences:
    """Preferences read from disk, plus a message for the user when something was wrong."""

    prefs: Preferences
    warning: str | None = None


def _coerce(annotation: Any, value: Any) -> tuple[bool, Any]:
    """``(True, value)`` if a TOML value fits a field's type (ints are fine for floats)."""
    allowed = set(typing.get_args(annotation)) or {annotation}
    if isinstance(value, bool):
        return bool in allowed, value
    if isinstance(value, int) and float in allowed:
        return True, float(value)
    if isinstance(value, float) and not math.isfinite(value):  # TOML allows nan and inf
        return False, value
    return any(isinstance(value, t) for t in allowed if isinstance(t, type)), value


def _fill(obj: Any, table: dict[str, Any], prefix: str, problems: list[str]) -> None:
    """Copy the valid values of ``table`` onto the dataclass ``obj``; note the invalid ones."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name not in table:
            continue
        value = table[f.name]
        current = getattr(obj, f.name)
        if dataclasses.is_dataclass(current):
            if isinstance(value, dict):
                _fill(current, value, f"{prefix}{f.name}.", problems)
            else:
                problems.append(f"{prefix}{f.name}")
            continue
        if isinstance(current, dict):  # a table of strings, e.g. [keymap]
            if not isinstance(value, dict):
                problems.append(f"{prefix}{f.name}")
                continue
            for key, item in value.items():
                if isinstance(item, str):
                    current[key] = item
                else:
                    problems.append(f"{prefix}{f.name}.{key}")
            continue
        ok, value = _coerce(hints[f.name], value)
        if ok and "range" in f.metadata:
            low, high = f.metadata["range"]
            ok = low <= value <= high
        if ok:
            setattr(obj, f.name, value)
        else:
            problems.append(f"{prefix}{f.name}")


def _backup(path: Path) -> Path | None:
    """Move an unreadable preferences file aside; returns where it went (None if it could not)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target


def load_preferences(path: Path) -> LoadedPreferences:
    """Read preferences; a missing file gives defaults, a corrupt one is backed up first."""
    prefs = Preferences()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return LoadedPreferences(prefs)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        backup = _backup(path)
        where = f"it was kept as {backup}" if backup else "it was left as it is"
        return LoadedPreferences(prefs, f"Could not read your preferences ({exc}); {where}. "
                                        "Starting from the default settings.")
    problems: list[str] = []
    _fill(prefs, data, "", problems)
    problems += [f"story.{name}" for name in _reset_invalid_sampling(prefs.story)]
    warning = None
    if problems:
        warning = f"Ignored invalid preference values: {', '.join(problems)}."
    return LoadedPreferences(prefs, warning)


def _without_none(value: Any) -> Any:
    """TOML has no null: drop ``None`` values (they mean "use the default")."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _reset_invalid_sampling(story: StorySettings) -> list[str]:
    """Put back the default of each sampling setting the model would refuse (NaN, a negative
    temperature, top_p above 1, ...); returns their names."""
    reset = []
    for name in ("temperature", "top_p", "max_tokens", "seed"):
        try:
            SamplingOptions(**{name: getattr(story, name)})
        except (SagaError, TypeError):
            setattr(story, name, getattr(StorySettings(), name))
            reset.append(name)
    return reset


def save_preferences(path: Path, prefs: Preferences) -> None:
    """Write preferences atomically (readers see the old file or the new one, never half);
    sampling settings the model would refuse are saved as their defaults."""
    prefs = copy.deepcopy(prefs)
    _reset_invalid_sampling(prefs.story)
    atomic_write_text(path, tomli_w.dumps(_without_none(dataclasses.asdict(prefs))))
