"""Where the app keeps its files (platformdirs locations, computed at call time).

Everything is computed when asked, never at import time, so tests (and users) can point
``XDG_CONFIG_HOME`` / ``XDG_DATA_HOME`` elsewhere on Linux.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

APP_NAME = "grain-de-saga"


def config_dir() -> Path:
    """Folder of the preferences file."""
    return Path(user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Folder of the story library, training runs and exports."""
    return Path(user_data_dir(APP_NAME))


def prefs_file() -> Path:
    """The TOML preferences file."""
    return config_dir() / "preferences.toml"


def library_file() -> Path:
    """The SQLite story library."""
    return data_dir() / "library.sqlite3"


def runs_dir() -> Path:
    """Folder holding one sub-folder per training run."""
    return data_dir() / "runs"


def exports_dir() -> Path:
    """Default folder for stories exported as Markdown or plain text."""
    return data_dir() / "exports"
