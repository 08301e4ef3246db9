"""Where the app keeps its files (platformdirs locations, computed at call time).

Everything is computed when asked, never at import time, so tests (and users) can point
``XDG_CONFIG_HOME`` / ``XDG_DATA_HOME`` elsewhere on Linux.
"""

from __future__ import annotations

import os
import tempfile
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
    """Default folder for exported stories: ``exports`` in the data folder, else (when that
    cannot be written: a read-only or broken data folder) the home folder, else the
    temporary folder, so that an export is always possible."""
    preferred = data_dir() / "exports"
    for folder in (preferred, Path.home(), Path(tempfile.gettempdir())):
        if can_write(folder):
            return folder
    return preferred


def can_write(path: Path) -> bool:
    """Whether files can be written in the folder ``path`` (or beside and over the file
    ``path``), or it can be created with its missing parent folders."""
    if path.is_dir():
        return os.access(path, os.W_OK | os.X_OK)
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
