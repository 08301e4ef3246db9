"""The story library: saved stories in SQLite (WAL, transactions, versioned schema).

The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades an older
file step by step inside a transaction. Every query is parameterised. Any SQLite problem
(locked, damaged, newer schema) becomes a :class:`LibraryError` with a message for the user;
the file itself is never deleted or rewritten behind the user's back.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: One entry per schema version: the statements that upgrade version ``i`` to ``i + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            theme TEXT NOT NULL DEFAULT '',
            tone TEXT NOT NULL DEFAULT '',
            genre TEXT NOT NULL DEFAULT '',
            characters TEXT NOT NULL DEFAULT '',
            opening TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            sampling TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX stories_by_date ON stories (created_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_COLUMNS = ("title", "text", "theme", "tone", "genre", "characters", "opening", "model",
            "sampling", "created_at")
_SEARCHED = ("title", "text", "theme", "tone", "genre", "characters", "model")


class LibraryError(Exception):
    """The library cannot be used right now; the message is meant for the user."""


@dataclass
class SavedStory:
    """A story with the settings that produced it."""

    title: str
    text: str
    theme: str = ""
    tone: str = ""
    genre: str = ""
    characters: str = ""
    opening: str = ""
    model: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None

    def settings_line(self) -> str:
        """The settings in one short line, e.g. ``adventure · cheerful · fantasy · Alice, Bob``."""
        parts = [p for p in (self.theme, self.tone, self.genre, self.characters) if p]
        return " · ".join(parts) or "no settings"

    def local_date(self) -> str:
        """Creation time in the local time zone, ``YYYY-MM-DD HH:MM``."""
        return self.created_at.astimezone().strftime("%Y-%m-%d %H:%M")


def _explain(exc: sqlite3.Error, path: Path) -> LibraryError:
    """Turn an SQLite error into a message that says what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LibraryError(f"The story library is locked by another program ({path}); "
                            "try again in a moment.")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed"
                                                   in text):
        return LibraryError(f"The story library file is damaged ({path}: {text}). It was left "
                            "untouched; move it away to start a new library.")
    return LibraryError(f"The story library could not be used ({path}: {text}).")


class StoryLibrary:
    """Saved stories in one SQLite file, opened on first use."""

    def __init__(self, path: Path, timeout: float = 1.0) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN``/``COMMIT`` (rolled back on error); errors explained."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(f"The story library {self.path} was written by a newer Grain de "
                               f"Saga (schema {version}, this one knows {SCHEMA_VERSION}).")
        for index in range(version, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[index]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {index + 1:d}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection (it is reopened on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def add(self, story: SavedStory) -> int:
        """Save a story and return its id."""
        values = [getattr(story, name) for name in _COLUMNS]
        values[_COLUMNS.index("sampling")] = json.dumps(story.sampling)
        values[_COLUMNS.index("created_at")] = story.created_at.astimezone(UTC).isoformat()
        with self._transaction(write=True) as conn:
            cursor = conn.execute(
                f"INSERT INTO stories ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})", values)
            story_id = int(cursor.lastrowid or 0)
        story.id = story_id
        return story_id

    def search(self, query: str = "") -> list[SavedStory]:
        """Stories whose fields contain every word of ``query`` (any case), newest first."""
        clauses, params = [], []
        for word in query.split():
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _SEARCHED) + ")")
            params.extend([pattern] * len(_SEARCHED))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM stories {where} "
                                "ORDER BY created_at DESC, id DESC", params).fetchall()
        return [_story(row) for row in rows]

    def get(self, story_id: int) -> SavedStory | None:
        """One story by id, or ``None`` if it is gone."""
        with self._transaction() as conn:
            row = conn.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM stories WHERE id = ?",
                               (story_id,)).fetchone()
        return _story(row) if row else None

    def delete(self, story_id: int) -> bool:
        """Delete a story; ``False`` if there was no such story."""
        with self._transaction(write=True) as conn:
            return conn.execute("DELETE FROM stories WHERE id = ?", (story_id,)).rowcount > 0


def _story(row: tuple[Any, ...]) -> SavedStory:
    values = dict(zip(_COLUMNS, row[1:], strict=True))
    try:
        sampling = json.loads(values.pop("sampling"))
    except json.JSONDecodeError:
        sampling = {}
    created = datetime.fromisoformat(values.pop("created_at"))
    return SavedStory(**values, sampling=sampling, created_at=created, id=row[0])


def suggest_title(text: str, limit: int = 48) -> str:
    """A title from a story's first sentence, cut at a word boundary to ``limit`` characters."""
    first = " ".join(text.split())
    for mark in ".!?":
        if mark in first:
            first = first[: first.index(mark)]
    first = first.strip(" ,;:-\"'")
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"
    return first or "Untitled story"
