"""The story library: saved stories in SQLite (WAL, transactions, versioned schema, FTS5).

The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades an older
file step by step, each step inside a transaction. Every query is parameterised. Any SQLite
problem (locked, damaged, newer schema) becomes a :class:`LibraryError` with a message for
the user; the file itself is never deleted or rewritten behind the user's back.

Full-text search uses an FTS5 table over titles and texts (external content, kept in sync by
triggers, ranked with ``bm25()``, matches marked with ``highlight()``/``snippet()``). When the
SQLite library has no FTS5 the triggers are dropped (so saving still works), searching falls
back to ``LIKE`` and :attr:`StoryLibrary.notice` says so once; an SQLite with FTS5 rebuilds the
index the next time it opens the file.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .highlight import MARK_END, MARK_START
from .paths import can_write

Step = str | Callable[[sqlite3.Connection], None]


def _backfill_seeds(conn: sqlite3.Connection) -> None:
    """Copy each story's seed out of its sampling settings into the new ``seed`` column."""
    rows = conn.execute("SELECT id, sampling FROM stories").fetchall()
    for story_id, sampling in rows:
        try:
            seed = json.loads(sampling).get("seed")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(seed, int) and not isinstance(seed, bool):
            conn.execute("UPDATE stories SET seed = ? WHERE id = ?", (seed, story_id))


#: One entry per schema version: the steps (SQL or a function) that upgrade version ``i``.
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
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
    (
        # Versions (continued or branched stories point at the story they grew from) and what
        # "tell it again" needs: the seed, and the model's folder and fingerprint.
        "ALTER TABLE stories ADD COLUMN parent_id INTEGER",
        "ALTER TABLE stories ADD COLUMN seed INTEGER",
        "ALTER TABLE stories ADD COLUMN model_path TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE stories ADD COLUMN model_id TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX stories_by_parent ON stories (parent_id)",
        _backfill_seeds,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_COLUMNS = ("title", "text", "theme", "tone", "genre", "characters", "opening", "model",
            "sampling", "created_at", "parent_id", "seed", "model_path", "model_id")
_SELECT = ", ".join(f"s.{name}" for name in ("id", *_COLUMNS))

_FTS_TABLE = ("CREATE VIRTUAL TABLE IF NOT EXISTS stories_fts USING fts5(title, text, "
              "content='stories', content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
_FTS_TRIGGERS = {
    "stories_fts_insert": "AFTER INSERT ON stories BEGIN "
    "INSERT INTO stories_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END",
    "stories_fts_delete": "AFTER DELETE ON stories BEGIN "
    "INSERT INTO stories_fts(stories_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); END",
    "stories_fts_update": "AFTER UPDATE OF title, text ON stories BEGIN "
    "INSERT INTO stories_fts(stories_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); "
    "INSERT INTO stories_fts(rowid, title, text) VALUES (new.id, new.title, new.text); END",
}
NO_FTS_NOTICE = ("This Python's SQLite has no full-text search (FTS5): the library search "
                 "matches plain text instead, without ranking or highlights.")
_WORD = re.compile(r"\w+")
#: Words around a match in a search result's excerpt.
SNIPPET_WORDS = 10
#: How long opening the library waits for another program that is creating or upgrading it.
OPEN_TIMEOUT = 10.0


class LibraryError(Exception):
    """The library cannot be used right now; the message is meant for the user."""


@dataclass
class SavedStory:
    """A story with everything that produced it (settings, seed, model) and its lineage."""

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
    parent_id: int | None = None
    seed: int | None = None
    model_path: str = ""
    model_id: str = ""
    id: int | None = None

    def settings_line(self) -> str:
        """The settings in one short line, e.g. ``adventure · cheerful · fantasy · Alice, Bob``."""
        parts = [p for p in (self.theme, self.tone, self.genre, self.characters) if p]
        return " · ".join(parts) or "no settings"

    def local_date(self) -> str:
        """Creation time in the local time zone, ``YYYY-MM-DD HH:MM``."""
        return self.created_at.astimezone().strftime("%Y-%m-%d %H:%M")


@dataclass
class Found:
    """A search result: the story, and its title, excerpt and text with the matches marked
    (between :data:`~tui.highlight.MARK_START` and :data:`~tui.highlight.MARK_END`)."""

    story: SavedStory
    title: str
    snippet: str = ""
    text: str = ""


@dataclass
class Filters:
    """Exact settings a search keeps (empty means any)."""

    theme: str = ""
    tone: str = ""
    genre: str = ""
    character: str = ""


def fts_query(text: str) -> str:
    """The FTS5 query for words typed by a user: each word quoted, as a prefix, all required.

    Only letters and digits survive, so nothing typed (quotes, ``AND(``, ``*``, ``:``) can be
    read as FTS5 syntax; ``""`` when nothing searchable is left.
    """
    return " ".join(f'"{word}"*' for word in _WORD.findall(text))


def fts5_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite library has the FTS5 extension."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.fts5_probe")
    return True


def _explain(exc: sqlite3.Error, path: Path) -> LibraryError:
    """Turn an SQLite error into a message that says what to do."""
    text = str(exc)
    if "readonly" in text:
        return LibraryError(f"The story library is read-only ({path}): stories can be read, "
                            "not saved or deleted.")
    if "full" in text:
        return LibraryError(f"The disk is full: the story library cannot be written ({path}).")
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
        self.full_text = True
        self.read_only = False
        self._notice: str | None = None
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
        except OSError as exc:  # the folder cannot be created: read-only, or a full disk
            raise LibraryError(f"The story library cannot be created in {self.path.parent}: "
                               f"{exc.strerror or exc}.") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        """Connect and bring the schema and the search index up to date.

        The upgrade runs under one write lock (``BEGIN IMMEDIATE``) and re-reads the schema
        version inside it, so two programs opening a brand-new library at once do not both
        create it: the second waits (up to :data:`OPEN_TIMEOUT`) and finds it done. A library
        this process cannot write is opened read-only, with a notice.
        """
        if not can_write(self.path):
            if self.path.is_file():
                return self._open_read_only()
            raise LibraryError(f"The story library cannot be created: {self.path.parent} is "
                               "not writable.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=max(self.timeout, OPEN_TIMEOUT),
                               isolation_level=None)
        try:
            _enable_wal(conn)
            self.full_text = fts5_available(conn)
            if not self.full_text:
                self._notice = NO_FTS_NOTICE
            if self._needs_upgrade(conn):
                with _immediate(conn):
                    self._migrate(conn)
                    self._index(conn)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """An existing library in a folder (or a file) this process cannot write: its stories
        can be read and searched, not saved or deleted."""
        uri = self.path.absolute().as_uri()
        # A WAL library needs its shared-memory file beside it; in a read-only folder that
        # cannot be created, and the file is then read as it is on disk (immutable).
        for mode in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=self.timeout,
                                   isolation_level=None)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                break
            except sqlite3.Error:
                conn.close()
        else:
            raise LibraryError(f"The story library {self.path} cannot be read.")
        if version != SCHEMA_VERSION:
            conn.close()
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            raise LibraryError(f"The story library {self.path} needs an upgrade but its folder "
                               "is read-only: make it writable to use the library.")
        self.full_text = fts5_available(conn) and _fts_triggers(conn) == set(_FTS_TRIGGERS)
        self.read_only = True
        self._notice = (f"The story library is read-only ({self.path}): its stories can be "
                        "read, not saved or deleted.")
        return conn

    def _newer(self, version: int) -> LibraryError:
        return LibraryError(f"The story library {self.path} was written by a newer Grain de "
                            f"Saga (schema {version}, this one knows {SCHEMA_VERSION}).")

    def _needs_upgrade(self, conn: sqlite3.Connection) -> bool:
        """Whether the schema or the search triggers are not as this version wants them."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        wanted = set(_FTS_TRIGGERS) if self.full_text else set()
        return version != SCHEMA_VERSION or _fts_triggers(conn) != wanted

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Upgrade the schema step by step (inside the caller's write transaction)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        for index in range(version, SCHEMA_VERSION):
            for step in MIGRATIONS[index]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version = {index + 1:d}")

    def _index(self, conn: sqlite3.Connection) -> None:
        """Create (or repair) the full-text index, or drop its triggers without FTS5 (inside
        the caller's write transaction)."""
        triggers = _fts_triggers(conn)
        if not self.full_text:
            for name in triggers:  # they would make every save fail without FTS5
                conn.execute(f"DROP TRIGGER {name}")
            return
        if triggers == set(_FTS_TRIGGERS):
            return
        conn.execute(_FTS_TABLE)  # new, or written without FTS5 meanwhile: (re)build the index
        for name, body in _FTS_TRIGGERS.items():
            conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        conn.execute("INSERT INTO stories_fts(stories_fts) VALUES ('rebuild')")

    def take_notice(self) -> str | None:
        """A message about the library for the user, once (e.g. "no full-text search")."""
        notice, self._notice = self._notice, None
        return notice

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

    def search(self, query: str = "", filters: Filters | None = None) -> list[Found]:
        """Stories containing every word of ``query`` (as word prefixes, any case) in their
        title or text and matching ``filters``: best matches first (titles count more), else
        newest first."""
        where, params = _filter_clauses(filters or Filters())
        words = _WORD.findall(query)
        with self._transaction() as conn:
            if words and self.full_text:
                marks = (MARK_START, MARK_END)
                rows = conn.execute(
                    f"SELECT {_SELECT}, highlight(stories_fts, 0, ?, ?), "
                    f"snippet(stories_fts, 1, ?, ?, '…', {SNIPPET_WORDS}), "
                    "highlight(stories_fts, 1, ?, ?) "
                    "FROM stories_fts JOIN stories s ON s.id = stories_fts.rowid "
                    f"WHERE stories_fts MATCH ? {''.join(' AND ' + c for c in where)} "
                    "ORDER BY bm25(stories_fts, 5.0, 1.0), s.created_at DESC, s.id DESC",
                    [*marks, *marks, *marks, fts_query(query), *params]).fetchall()
                return [Found(_story(row[:-3]), *row[-3:]) for row in rows]
            for word in words:  # without FTS5: every word somewhere in the title or text
                pattern = "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"
                where.append("(s.title LIKE ? ESCAPE '\\' OR s.text LIKE ? ESCAPE '\\')")
                params.extend([pattern, pattern])
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = conn.execute(f"SELECT {_SELECT} FROM stories s {clause} "
                                "ORDER BY s.created_at DESC, s.id DESC", params).fetchall()
        return [Found(story, story.title, "", story.text) for story in map(_story, rows)]

    def get(self, story_id: int) -> SavedStory | None:
        """One story by id, or ``None`` if it is gone."""
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {_SELECT} FROM stories s WHERE s.id = ?",
                               (story_id,)).fetchone()
        return _story(row) if row else None

    def delete(self, story_id: int) -> bool:
        """Delete a story (its versions then hang from its parent); ``False`` if it was gone."""
        with self._transaction(write=True) as conn:
            conn.execute("UPDATE stories SET parent_id = (SELECT parent_id FROM stories "
                         "WHERE id = ?) WHERE parent_id = ?", (story_id, story_id))
            return conn.execute("DELETE FROM stories WHERE id = ?", (story_id,)).rowcount > 0

    def family(self, story_id: int) -> list[tuple[int, SavedStory]]:
        """Every version related to a story: its first ancestor and all that grew from it, as
        ``(depth, story)`` in tree order (each version after the one it came from)."""
        with self._transaction() as conn:
            root, seen = story_id, {story_id}
            while True:
                row = conn.execute("SELECT parent_id FROM stories WHERE id = ?",
                                   (root,)).fetchone()
                if row is None or row[0] is None or row[0] in seen:
                    break
                root = row[0]
                seen.add(root)
            rows = conn.execute(
                "WITH RECURSIVE tree(id, depth, path) AS ("
                "  SELECT id, 0, printf('%012d', id) FROM stories WHERE id = ?"
                "  UNION ALL SELECT c.id, t.depth + 1, t.path || '/' || printf('%012d', c.id)"
                "  FROM stories c JOIN tree t ON c.parent_id = t.id WHERE t.depth < 100)"
                f" SELECT t.depth, {_SELECT} FROM tree t JOIN stories s ON s.id = t.id "
                "ORDER BY t.path", (root,)).fetchall()
        return [(row[0], _story(row[1:])) for row in rows]

    def characters(self) -> list[str]:
        """Every character name in the library, sorted (case-insensitively unique)."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT DISTINCT characters FROM stories "
                                "WHERE characters != ''").fetchall()
        names: dict[str, str] = {}
        for (text,) in rows:
            for name in text.split(","):
                if name.strip():
                    names.setdefault(name.strip().casefold(), name.strip())
        return sorted(names.values(), key=str.casefold)


def _fts_triggers(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'stories_fts_%'")}


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to write-ahead logging, waiting (up to :data:`OPEN_TIMEOUT`) for other programs.

    Switching the journal mode can answer "locked" at once, without SQLite's busy handler,
    while another program opens or creates the same library, so it is retried here.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on ``conn``, rolled back if anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _filter_clauses(filters: Filters) -> tuple[list[str], list[Any]]:
    """``WHERE`` conditions (on alias ``s``) and their parameters for the chosen settings."""
    clauses: list[str] = []
    params: list[Any] = []
    for name in ("theme", "tone", "genre"):
        value = getattr(filters, name)
        if value:
            clauses.append(f"s.{name} = ?")
            params.append(value)
    if filters.character.strip():
        # The names are stored as "Zara, Milo": compare whole names, any case, any spacing.
        clauses.append("instr(',' || lower(replace(s.characters, ' ', '')) || ',', "
                       "',' || lower(replace(?, ' ', '')) || ',') > 0")
        params.append(filters.character.strip())
    return clauses, params


def _story(row: tuple[Any, ...]) -> SavedStory:
    values = dict(zip(_COLUMNS, row[1:], strict=True))
    try:
        sampling = json.loads(values.pop("sampling"))
    except json.JSONDecodeError:
        sampling = {}
    created = datetime.fromisoformat(values.pop("created_at"))
    return SavedStory(**values, sampling=sampling if isinstance(sampling, dict) else {},
                      created_at=created, id=row[0])


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
