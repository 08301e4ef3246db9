"""Story files: finding them, reading each format, the split of a corpus, and streaming it.

Chunks of raw stories (:class:`Job`) go to the workers of :mod:`.workers`.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from ..errors import SagaError
from ..prefix import END_OF_STORY
from ..text import clean_story

SEPARATOR = END_OF_STORY
#: Stories are handed to workers in chunks of about this many characters.
_JOB_CHARS = 1_000_000
_READ_CHARS = 1 << 20
_VALID_NAME = re.compile(r"(^|[-_.])(valid|validation|val|dev)$")
#: Story file formats read from a directory (a single file of any other name is read as text).
_FORMATS = {".txt": "text", ".md": "text", ".jsonl": "jsonl", ".parquet": "parquet",
            ".txt.gz": "text", ".jsonl.gz": "jsonl"}
_PYARROW_MISSING = "reading .parquet needs pyarrow: pip install 'grain-de-saga[parquet]'"

ProgressFn = Callable[[str, int, int], None]


def _suffix(file: Path) -> str:
    name = file.name.lower()
    return next((s for s in sorted(_FORMATS, key=len, reverse=True) if name.endswith(s)), "")


def _format(file: Path) -> str:
    return _FORMATS.get(_suffix(file), "text")


def _story_files(path: Path) -> list[Path]:
    if not path.exists():
        raise SagaError(f"data path not found: {path}")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and _suffix(p) and p.stem.lower() != "readme")
    if not files:
        raise SagaError(f"no .txt files (nor .md, .jsonl, .parquet, or .gz of these) found "
                        f"in {path}")
    return files


def _is_valid_file(file: Path) -> bool:
    stem = file.name[: len(file.name) - len(_suffix(file))] if _suffix(file) else file.stem
    return bool(_VALID_NAME.search(stem.lower()))


def _corpus_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(training files, validation files); no validation files means a split by story hash.

    Files named like ``valid.txt`` / ``TinyStories-valid.txt`` / ``val.jsonl`` form the
    validation split when a directory also has other files.
    """
    files = _story_files(path)
    valid = [f for f in files if _is_valid_file(f)] if len(files) > 1 else []
    if not valid or len(valid) == len(files):
        return files, []
    return [f for f in files if f not in valid], valid


def _open_binary(file: Path) -> tuple[BinaryIO, BinaryIO]:
    """(stream of the file's content, the raw file whose position tells the bytes read)."""
    try:
        raw = open(file, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise SagaError(f"cannot read {file}: {exc.strerror}") from None
    if file.name.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _text_stream(stream: BinaryIO) -> TextIO:
    """The text of a file: UTF-8 (a byte-order mark dropped), or UTF-16 when it starts with
    UTF-16's byte-order mark (as Windows editors save "Unicode" text)."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    start = buffered.peek(2)[:2]
    encoding = "utf-16" if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    return io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline=None)


def _separated(texts: Iterable[str]) -> Iterator[str]:
    """The stories of text pieces that may hold several stories separated by ``<|endoftext|>``."""
    for text in texts:
        yield from (part for part in text.split(SEPARATOR) if part.strip())


def _text_file_stories(text: TextIO, file: Path) -> Iterator[str]:
    """The stories of a text file, read a chunk at a time: a story that spans many chunks is
    joined once, when its end is found (not once per chunk, which took quadratic time)."""
    pending: list[str] = []  # chunks of the story being read, none with a separator
    tail = ""  # the last characters of ``pending``: too few for a separator
    while chunk := text.read(_READ_CHARS):
        if "\x00" in chunk or chunk.count("\ufffd") > len(chunk) // 20:
            raise SagaError(f"{file} is not a text file (it holds binary data): remove it from "
                            "the data folder")
        if SEPARATOR not in tail + chunk:
            pending.append(chunk)
            tail = (tail + chunk)[1 - len(SEPARATOR):]
            continue
        parts = "".join([*pending, chunk]).split(SEPARATOR)
        pending = [parts.pop()]
        tail = pending[0][1 - len(SEPARATOR):]
        yield from (part for part in parts if part.strip())
    story = "".join(pending)
    if story.strip():
        yield story


def _jsonl_file_stories(text: TextIO, file: Path) -> Iterator[str]:
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise SagaError(f"{file}, line {number}: not valid JSON") from None
        story = record.get("text") if isinstance(record, dict) else None
        if not isinstance(story, str):
            raise SagaError(f'{file}, line {number}: expected an object with a "text" string')
        yield from _separated((story,))


def _parquet_file_stories(file: Path) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SagaError(_PYARROW_MISSING) from None
    try:
        table = pq.ParquetFile(file)
        if "text" not in table.schema_arrow.names:
            raise SagaError(f'{file} has no "text" column (it has: '
                            f"{', '.join(table.schema_arrow.names)})")
        for batch in table.iter_batches(batch_size=2048, columns=["text"]):
            yield from _separated(t for t in batch.column(0).to_pylist() if isinstance(t, str))
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise SagaError(f"cannot read {file}: {str(exc).splitlines()[0]}") from None


def _file_stories(file: Path, position: Callable[[int], None]) -> Iterator[str]:
    """Raw stories of one file; before each, ``position`` is told how many bytes of the file
    were read (this story's included)."""
    kind = _format(file)
    if kind == "parquet":
        yield from _parquet_file_stories(file)
        position(file.stat().st_size)
        return
    stream, raw = _open_binary(file)
    try:
        text = _text_stream(stream)
        stories = (_jsonl_file_stories(text, file) if kind == "jsonl"
                   else _text_file_stories(text, file))
        for story in stories:
            position(raw.tell())
            yield story
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        reason = "truncated gzip data" if isinstance(exc, EOFError) else str(exc)
        raise SagaError(f"cannot read {file}: {reason}") from None
    finally:
        stream.close()
        raw.close()


def _clean_unique(raw: Iterable[str], seen: set[bytes] | None = None) -> Iterator[str]:
    """Cleaned stories, empty ones and repeats (of each other and of the keys in ``seen``,
    which grows) dropped, in order."""
    seen = set() if seen is None else seen
    for text in raw:
        story = clean_story(text)
        if story and (key := story_key(story)) not in seen:
            seen.add(key)
            yield story


def _all_stories(files: Iterable[Path]) -> Iterator[str]:
    for file in files:
        yield from _file_stories(file, lambda _: None)


def read_stories(path: str | Path) -> list[str]:
    """All cleaned, de-duplicated stories in a file or a directory of story files.

    A text file holds many stories separated by ``<|endoftext|>`` lines, or one story; a
    ``.jsonl`` file one story per line (a ``text`` field); a ``.parquet`` file a ``text``
    column.  ``.gz`` files are decompressed on the fly.  Meant for small corpora: the stories
    are returned as a list (:func:`stream_stories` and :func:`prepare_data` stream instead).
    """
    return list(_clean_unique(_all_stories(_story_files(Path(path)))))


def stream_stories(path: str | Path) -> Iterator[tuple[str, int, int]]:
    """The stories of :func:`read_stories`, in the same order, one at a time: (story, bytes of
    the files read so far, bytes of all the files).  Memory holds one story and a key per
    story (about 100 bytes, to drop repeats), never the file."""
    files = _story_files(Path(path))
    try:
        sizes = [f.stat().st_size for f in files]
    except OSError as exc:
        raise SagaError(f"cannot read {exc.filename}: {exc.strerror}") from None
    total = sum(sizes)
    offset = 0
    read = [0]
    seen: set[bytes] = set()

    def position(n: int) -> None:
        read[0] = n

    for file, size in zip(files, sizes, strict=True):
        read[0] = 0
        for story in _clean_unique(_file_stories(file, position), seen):
            yield story, offset + min(read[0], size), total
        offset += size


def story_key(story: str) -> bytes:
    """8-byte hash of a cleaned story (exact duplicates have the same key)."""
    return hashlib.blake2b(story.encode(), digest_size=8).digest()


def story_hash(story: str) -> int:
    """32-bit hash of a cleaned story that decides its split."""
    return int.from_bytes(hashlib.blake2b(story.encode(), digest_size=4).digest(), "big")


def valid_cut(valid_fraction: float) -> int:
    """The :func:`story_hash` below which a story goes to validation."""
    return int(valid_fraction * 2**32)


def split_error(path: str | Path, n_train: int, n_valid: int) -> SagaError:
    """The error for a corpus whose splits came out with these numbers of stories."""
    return SagaError(f"no stories found in {path}" if not n_train and not n_valid
                     else f"need at least 2 stories in {path} (one for validation)")


@dataclass(frozen=True)
class Job:
    """A chunk of raw stories, all from training files or all from validation files."""

    stories: list[str]
    from_valid_file: bool


class Corpus:
    """The story files of a data path, streamed as jobs with progress in bytes read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.train_files, self.valid_files = _corpus_files(path)
        self.files = self.train_files + self.valid_files
        try:
            self.sizes = [f.stat().st_size for f in self.files]
        except OSError as exc:
            raise SagaError(f"cannot read {exc.filename}: {exc.strerror}") from None
        self.total_bytes = sum(self.sizes)

    def check_enough_stories(self) -> None:
        """Fail early (before any long step) when the corpus cannot give both splits: fewer
        than two distinct stories, or no story in the training or validation files."""
        groups = [self.train_files, self.valid_files] if self.valid_files else [self.files]
        found = [len(list(itertools.islice(_clean_unique(_all_stories(files)), 2)))
                 for files in groups]
        if len(found) == 2 and min(found) == 0:
            raise split_error(self.path, found[0], found[1])
        if sum(found) < 2:
            raise split_error(self.path, 0, sum(found))

    def key(self, settings: dict[str, object], progress: ProgressFn | None) -> str:
        """Hash of every file's name, size and bytes, and of ``settings``."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps(settings, sort_keys=True).encode())
        base = self.path if self.path.is_dir() else self.path.parent
        done = 0
        buffer = bytearray(4 << 20)
        view = memoryview(buffer)
        for file, size in zip(self.files, self.sizes, strict=True):
            h.update(f"{file.relative_to(base).as_posix()}\0{size}\0".encode())
            try:
                with open(file, "rb") as handle:
                    while n := handle.readinto(buffer):
                        h.update(view[:n])
                        done += n
                        if progress:
                            progress("checking data", done, self.total_bytes)
            except OSError as exc:
                raise SagaError(f"cannot read {file}: {exc.strerror}") from None
        return h.hexdigest()[:24]

    def jobs(self, label: str, progress: ProgressFn | None) -> Iterator[Job]:
        """Chunks of raw stories: training files first, then validation files.  Progress is
        the bytes read so far, reported once per chunk."""
        offset = 0
        read = [0]
        reported = [-1]

        def report(done: int) -> None:
            if progress and done != reported[0]:
                reported[0] = done
                progress(label, done, self.total_bytes)

        def position(n: int) -> None:
            read[0] = n

        for file, size in zip(self.files, self.sizes, strict=True):
            from_valid = file in self.valid_files
            stories: list[str] = []
            chars = 0
            read[0] = 0
            for story in _file_stories(file, position):
                stories.append(story)
                chars += len(story)
                if chars >= _JOB_CHARS:
                    report(offset + read[0])
                    yield Job(stories, from_valid)
                    stories, chars = [], 0
            if stories:
                report(offset + read[0])
                yield Job(stories, from_valid)
            offset += size
        report(self.total_bytes)

