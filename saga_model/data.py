"""Reading story corpora, cleaning, splitting, conditioning and the memory-mapped token cache.

Preparation streams: stories are read file by file (``.txt``, ``.jsonl``, ``.parquet``, each
optionally gzipped), cleaned, labelled, conditioned and tokenized in chunks, in parallel worker
processes for large corpora, and appended to ``uint16`` token files on disk.  Memory holds a
few chunks, an 8-byte hash per story (to drop duplicates) and the example offsets, never the
corpus.  The result is cached under a key made of the raw files' bytes and every setting.
"""

from __future__ import annotations

import array
import contextlib
import gzip
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
from tokenizers import Tokenizer

from . import labels as lab
from .atomic import atomic_directory
from .errors import SagaError
from .tokenizer import StoryTokenizer, train_tokenizer

#: Bump when cleaning, labelling, splitting or the cache layout changes, so old caches are not
#: reused.
DATA_FORMAT_VERSION = 2
SEPARATOR = lab.END_OF_STORY
#: The tokenizer is trained on (at most) this many characters of conditioned training text,
#: taken from the start of the corpus.
TOKENIZER_SAMPLE_CHARS = 50_000_000
#: Corpora smaller than this are prepared in this process; larger ones use one worker process
#: per core (``GRAIN_DATA_WORKERS`` overrides).
PARALLEL_MIN_BYTES = 16_000_000
#: Stories are handed to workers in chunks of about this many characters.
_JOB_CHARS = 1_000_000
_READ_CHARS = 1 << 20

_MOJIBAKE = {
    "â€œ": "“", "â€\x9d": "”", "â€™": "’", "â€˜": "‘", "â€”": "—", "â€“": "–", "â€¦": "…",
}
_PUNCTUATION = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "…": "...", "\t": " "})
_CONTROL_LITERAL = re.compile(r"<\|[a-z_]+\|>")
#: Runs of spaces and single odd spaces, all of which become one plain space.
_SPACES = re.compile(r"[ \u00a0\u2000-\u200b]{2,}|[\u00a0\u2000-\u200b]")
_BLANK_LINES = re.compile(r"\n{3,}")
_VALID_NAME = re.compile(r"(^|[-_.])(valid|validation|val|dev)$")
#: Story file formats read from a directory (a single file of any other name is read as text).
_FORMATS = {".txt": "text", ".jsonl": "jsonl", ".parquet": "parquet",
            ".txt.gz": "text", ".jsonl.gz": "jsonl"}
_PYARROW_MISSING = "reading .parquet needs pyarrow: pip install 'grain-de-saga[parquet]'"

ProgressFn = Callable[[str, int, int], None]


def clean_story(text: str) -> str:
    """Normalise one story: repair common mojibake, NFC, plain quotes, tidy whitespace.

    Control-token literals such as ``<|theme|>`` are removed so that text can never inject them.
    """
    for bad, good in _MOJIBAKE.items():
        text = text.replace(bad, good)
    text = unicodedata.normalize("NFC", text).translate(_PUNCTUATION)
    text = _CONTROL_LITERAL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.strip() for line in _SPACES.sub(" ", text).split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def split_stories(text: str) -> list[str]:
    """Split TinyStories-format text (stories separated by ``<|endoftext|>``) into stories."""
    return [part for part in text.split(SEPARATOR) if part.strip()]


# ---------------------------------------------------------------------------------------------
# Reading story files
# ---------------------------------------------------------------------------------------------


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
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not p.name.startswith(".") and _suffix(p))
    if not files:
        raise SagaError(f"no .txt files (nor .jsonl, .parquet, or .gz of these) found in {path}")
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
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=None)


def _separated(texts: Iterable[str]) -> Iterator[str]:
    """The stories of text pieces that may hold several stories separated by ``<|endoftext|>``."""
    for text in texts:
        yield from (part for part in text.split(SEPARATOR) if part.strip())


def _text_file_stories(text: TextIO) -> Iterator[str]:
    pending = ""
    while chunk := text.read(_READ_CHARS):
        parts = (pending + chunk).split(SEPARATOR)
        pending = parts.pop()
        yield from (part for part in parts if part.strip())
    if pending.strip():
        yield pending


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
    """Raw stories of one file; ``position`` is told how many bytes of the file were read."""
    kind = _format(file)
    if kind == "parquet":
        yield from _parquet_file_stories(file)
        position(file.stat().st_size)
        return
    stream, raw = _open_binary(file)
    try:
        text = _text_stream(stream)
        stories = (_jsonl_file_stories(text, file) if kind == "jsonl"
                   else _text_file_stories(text))
        for story in stories:
            yield story
            position(raw.tell())
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        reason = "truncated gzip data" if isinstance(exc, EOFError) else str(exc)
        raise SagaError(f"cannot read {file}: {reason}") from None
    finally:
        stream.close()
        raw.close()


def _clean_unique(raw: Iterable[str]) -> Iterator[str]:
    """Cleaned stories, empty ones and repeats dropped, in order."""
    seen: set[bytes] = set()
    for text in raw:
        story = clean_story(text)
        if story and (key := _story_key(story)) not in seen:
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
    are returned as a list (:func:`prepare_data` streams instead).
    """
    return list(_clean_unique(_all_stories(_story_files(Path(path)))))


def _story_key(story: str) -> bytes:
    """8-byte hash of a cleaned story (exact duplicates have the same key)."""
    return hashlib.blake2b(story.encode(), digest_size=8).digest()


def _story_hash(story: str) -> int:
    """32-bit hash of a cleaned story that decides its split."""
    return int.from_bytes(hashlib.blake2b(story.encode(), digest_size=4).digest(), "big")


def _valid_cut(valid_fraction: float) -> int:
    return int(valid_fraction * 2**32)


def _split_error(path: str | Path, n_train: int, n_valid: int) -> SagaError:
    return SagaError(f"no stories found in {path}" if not n_train and not n_valid
                     else f"need at least 2 stories in {path} (one for validation)")


def load_splits(path: str | Path, valid_fraction: float) -> tuple[list[str], list[str]]:
    """Train and validation stories of a corpus (as lists: meant for small corpora).

    Files named like ``valid.txt`` / ``TinyStories-valid.txt`` / ``val.txt`` form the
    validation split when a directory has them (stories also in a training file are dropped
    from it); otherwise each story goes to validation when a hash of its text falls below
    ``valid_fraction`` (deterministic, independent of file order).  If that leaves one split
    empty, the last story is the only validation story.  :func:`prepare_data` splits the same
    way.
    """
    train_files, valid_files = _corpus_files(Path(path))
    if valid_files:
        train = list(_clean_unique(_all_stories(train_files)))
        known = {_story_key(s) for s in train}
        valid = [s for s in _clean_unique(_all_stories(valid_files))
                 if _story_key(s) not in known]
    else:
        stories = list(_clean_unique(_all_stories(train_files)))
        cut = _valid_cut(valid_fraction)
        in_valid = [_story_hash(s) < cut for s in stories]
        if all(in_valid) or not any(in_valid):  # tiny corpora: keep exactly one for validation
            in_valid = [i == len(stories) - 1 for i in range(len(stories))]
        train = [s for s, v in zip(stories, in_valid, strict=True) if not v]
        valid = [s for s, v in zip(stories, in_valid, strict=True) if v]
    if not train or not valid:
        raise _split_error(path, len(train), len(valid))
    return train, valid


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------


def conditioned_example(story: str, labels: lab.StoryLabels, rng: random.Random,
                        field_dropout: float, name_swap: float) -> str:
    """Training text of one story: control prefix (some fields dropped, names swapped) + story.

    Names are swapped in the story and in the prefix alike, before fields are dropped: the
    model sees many names, and learns to use the ones the prefix gives.
    """
    if labels.characters and rng.random() < name_swap:
        story, names = lab.swap_names(story, labels.characters, rng)
        labels = lab.StoryLabels(labels.theme, labels.tone, labels.genre, names)
    return lab.control_prefix(lab.drop_fields(labels, rng, field_dropout)) + story + SEPARATOR


def unconditioned_example(story: str) -> str:
    """Text of a story with an empty control prefix (how validation loss is measured)."""
    return lab.STORY_START + story + SEPARATOR


def _example_rng(seed: int, copy: int, key: bytes) -> random.Random:
    """The random stream of one conditioned copy of one story: independent of the other stories,
    so that any number of workers produce the same examples."""
    return random.Random(f"{seed}-{copy}-{key.hex()}")


@dataclass
class TokenSplit:
    """One split as a flat token stream plus the offset where each example starts."""

    tokens: np.ndarray
    starts: np.ndarray
    n_bytes: int

    @property
    def n_tokens(self) -> int:
        """Length of the token stream."""
        return int(self.tokens.shape[0])


@dataclass
class PreparedData:
    """Token streams of both splits, ready to batch."""

    train: TokenSplit
    valid: TokenSplit
    cache_dir: Path


# ---------------------------------------------------------------------------------------------
# Workers: stories -> examples
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipe:
    """How stories become examples: everything a worker needs besides the stories."""

    seed: int
    field_dropout: float
    name_swap: float
    augment_copies: int
    valid_cut: int  # stories whose 32-bit hash is below this are for validation (0: none)
    valid_key: bytes | None = None  # when set, only this story is for validation
    tokenizer_json: str | None = None  # None: return texts (the tokenizer sample), not tokens


@dataclass(frozen=True)
class _Job:
    """A chunk of raw stories, all from training files or all from validation files."""

    stories: list[str]
    from_valid_file: bool


@dataclass
class _Part:
    """Examples of one destination (validation, or one copy of the training split)."""

    tokens: np.ndarray  # uint16, all examples one after the other
    lengths: np.ndarray  # int64, tokens of each example
    owners: np.ndarray  # int64, index (into the batch's stories) of each example's story


@dataclass
class _Batch:
    """What a worker made of a job: one entry per non-empty story."""

    keys: list[bytes] = field(default_factory=list)
    raw_index: list[int] = field(default_factory=list)  # position of the story in the job
    in_valid: list[bool] = field(default_factory=list)
    n_bytes: list[int] = field(default_factory=list)
    parts: list[_Part] = field(default_factory=list)  # [validation, copy 0, copy 1, ...]
    texts: list[str] = field(default_factory=list)  # texts mode: copy-0 training texts
    text_owners: list[int] = field(default_factory=list)


class _Worker:
    """Cleans, labels, conditions and (with a tokenizer) encodes chunks of stories."""

    def __init__(self, recipe: _Recipe) -> None:
        self.recipe = recipe
        self.tokenizer = (StoryTokenizer(Tokenizer.from_str(recipe.tokenizer_json))
                          if recipe.tokenizer_json is not None else None)

    def run(self, job: _Job) -> _Batch:
        """The examples of one chunk (as texts without a tokenizer), with each story's key,
        split and size."""
        r = self.recipe
        batch = _Batch()
        destinations: list[list[tuple[int, str]]] = [[] for _ in range(1 + r.augment_copies)]
        for index, raw in enumerate(job.stories):
            story = clean_story(raw)
            if not story:
                continue
            key = _story_key(story)
            if job.from_valid_file:
                in_valid = True
            elif r.valid_key is not None:
                in_valid = key == r.valid_key
            else:
                in_valid = _story_hash(story) < r.valid_cut
            owner = len(batch.keys)
            batch.keys.append(key)
            batch.raw_index.append(index)
            batch.in_valid.append(in_valid)
            batch.n_bytes.append(len(story.encode()))
            if in_valid:
                if self.tokenizer is not None:
                    destinations[0].append((owner, unconditioned_example(story)))
                continue
            labels = lab.derive_labels(story)
            for copy in range(r.augment_copies if self.tokenizer is not None else 1):
                text = conditioned_example(story, labels, _example_rng(r.seed, copy, key),
                                           r.field_dropout, r.name_swap)
                if self.tokenizer is None:
                    batch.texts.append(text)
                    batch.text_owners.append(owner)
                else:
                    destinations[1 + copy].append((owner, text))
        if self.tokenizer is not None:
            batch.parts = [self._encode(examples) for examples in destinations]
        return batch

    def _encode(self, examples: list[tuple[int, str]], step: int = 256) -> _Part:
        """Token ids of the examples, encoded a few at a time (the tokenizer's per-text
        objects are large)."""
        assert self.tokenizer is not None
        tokens = [np.empty(0, dtype=np.uint16)]
        lengths = [np.empty(0, dtype=np.int64)]
        for i in range(0, len(examples), step):
            ids = self.tokenizer.encode_batch([text for _, text in examples[i : i + step]])
            lengths.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
            tokens.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint16,
                                      count=int(lengths[-1].sum())))
        owners = np.fromiter((owner for owner, _ in examples), dtype=np.int64,
                             count=len(examples))
        return _Part(np.concatenate(tokens), np.concatenate(lengths), owners)


_WORKER: _Worker | None = None


def _init_worker(recipe: _Recipe) -> None:
    """Set up a worker process (its one :class:`_Worker`).

    Ctrl-C is left to the main process (``grain-train`` turns it into a stop request), and a
    worker whose main process is gone exits instead of waiting for work forever.
    """
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()
    _WORKER = _Worker(recipe)


def _run_job(job: _Job) -> _Batch:
    """Task run in a worker process."""
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def _worker_count(total_bytes: int, workers: int | None) -> int:
    """Worker processes to use: ``workers``, else ``GRAIN_DATA_WORKERS``, else one per core
    for corpora of :data:`PARALLEL_MIN_BYTES` or more (1 means: work in this process)."""
    if workers is None and os.environ.get("GRAIN_DATA_WORKERS"):
        try:
            workers = int(os.environ["GRAIN_DATA_WORKERS"])
        except ValueError:
            raise SagaError("GRAIN_DATA_WORKERS must be a whole number") from None
    if workers is None:
        if total_bytes < PARALLEL_MIN_BYTES:
            return 1
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
        return max(1, cores or 1)
    return max(1, workers)


def _run_jobs(jobs: Iterable[_Job], recipe: _Recipe, workers: int) -> Iterator[tuple[_Job, _Batch]]:
    """Each job with its batch, in order; with several workers at most two jobs per worker are
    in flight, so memory stays bounded however large the corpus."""
    if workers <= 1:
        worker = _Worker(recipe)
        for job in jobs:
            yield job, worker.run(job)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(recipe,))
    pending: deque[tuple[_Job, Future[_Batch]]] = deque()
    try:
        for job in jobs:
            pending.append((job, pool.submit(_run_job, job)))
            if len(pending) >= 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    except BrokenProcessPool:
        raise SagaError("a data preparation worker process stopped (out of memory? or a "
                        "script calling prepare_data without `if __name__ == '__main__':`); "
                        "GRAIN_DATA_WORKERS=1 prepares in this process") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Corpus:
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
            raise _split_error(self.path, found[0], found[1])
        if sum(found) < 2:
            raise _split_error(self.path, 0, sum(found))

    def key(self, settings: dict[str, object], progress: ProgressFn | None) -> str:
        """Hash of every file's name, size and bytes, and of ``settings``."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps({"version": DATA_FORMAT_VERSION, **settings},
                            sort_keys=True).encode())
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

    def jobs(self, label: str, progress: ProgressFn | None) -> Iterator[_Job]:
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
                    yield _Job(stories, from_valid)
                    stories, chars = [], 0
            if stories:
                report(offset + read[0])
                yield _Job(stories, from_valid)
            offset += size
        report(self.total_bytes)


# ---------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------


def _sample_texts(corpus: _Corpus, recipe: _Recipe, workers: int, limit: int,
                  progress: ProgressFn | None) -> tuple[list[str], bytes | None, int]:
    """(conditioned copy-0 texts of the first training stories, up to ``limit`` characters;
    key of the last story seen; number of distinct stories seen)."""
    texts: list[str] = []
    seen: set[bytes] = set()
    chars = 0
    last_key = None
    batches = _run_jobs(corpus.jobs("sampling for the tokenizer", progress), recipe, workers)
    with contextlib.closing(batches):  # stopping early stops the workers
        for _, batch in batches:
            fresh = []
            for key in batch.keys:
                fresh.append(key not in seen)
                seen.add(key)
                last_key = key
            for owner, text in zip(batch.text_owners, batch.texts, strict=True):
                if fresh[owner]:
                    texts.append(text)
                    chars += len(text)
            if chars >= limit:
                break
    return texts, last_key, len(seen)


class _SeenKeys:
    """Set of 8-byte story keys in 8 bytes per story, with no Python object per key: a large
    sorted array, plus a small sorted array of recent keys merged into it now and then."""

    def __init__(self, merge_every: int = 1 << 16) -> None:
        self._old = np.empty(0, dtype=np.uint64)
        self._new = np.empty(0, dtype=np.uint64)
        self._merge_every = merge_every

    @staticmethod
    def _contains(known: np.ndarray, values: np.ndarray) -> np.ndarray:
        if not known.size:
            return np.zeros(values.size, dtype=bool)
        return known[np.minimum(np.searchsorted(known, values), known.size - 1)] == values

    def add(self, keys: list[bytes]) -> np.ndarray:
        """Mark ``keys`` as seen; True for each key not seen before (nor earlier in ``keys``)."""
        values = np.frombuffer(b"".join(keys), dtype=np.uint64)
        fresh = np.zeros(values.size, dtype=bool)
        fresh[np.unique(values, return_index=True)[1]] = True  # first of equal keys
        fresh &= ~self._contains(self._old, values) & ~self._contains(self._new, values)
        added = np.sort(values[fresh])
        self._new = np.insert(self._new, np.searchsorted(self._new, added), added)
        if self._new.size >= self._merge_every:
            self._old = np.insert(self._old, np.searchsorted(self._old, self._new), self._new)
            self._new = np.empty(0, dtype=np.uint64)
        return fresh


class _TokenFile:
    """Examples appended to a ``uint16`` token file, with the length of each (in one growing
    buffer: many small arrays kept alive between the large transient ones would fragment the
    heap, and memory would grow with the corpus)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.lengths = array.array("q")
        self.n_tokens = 0

    def add(self, part: _Part, keep: np.ndarray) -> None:
        """Append the examples of ``part`` whose story is kept."""
        keep_examples = keep[part.owners]
        if keep_examples.all():
            tokens, lengths = part.tokens, part.lengths
        else:
            tokens = part.tokens[np.repeat(keep_examples, part.lengths)]
            lengths = part.lengths[keep_examples]
        self.handle.write(memoryview(tokens))
        self.lengths.frombytes(lengths.astype(np.int64, copy=False).tobytes())
        self.n_tokens += int(tokens.size)

    def add_tokens(self, ids: list[int]) -> None:
        """Append one example."""
        self.add(_Part(np.asarray(ids, dtype=np.uint16), np.array([len(ids)]), np.array([0])),
                 np.ones(1, dtype=bool))

    def drop_last(self) -> None:
        """Remove the last example."""
        self.n_tokens -= self.lengths.pop()
        self.handle.flush()
        self.handle.truncate(self.n_tokens * 2)
        self.handle.seek(0, os.SEEK_END)

    def example_lengths(self) -> np.ndarray:
        """Tokens of each example, in order."""
        return np.frombuffer(self.lengths, dtype=np.int64)

    def close(self) -> None:
        self.handle.close()


@dataclass
class _Tally:
    """Stories of a split and their UTF-8 bytes."""

    stories: int = 0
    bytes: int = 0


def _write_splits(corpus: _Corpus, recipe: _Recipe, tokenizer: StoryTokenizer, workers: int,
                  out: Path, progress: ProgressFn | None) -> dict[str, int] | bytes:
    """Write ``train.bin``/``valid.bin`` and their starts into ``out``; returns the counts for
    ``meta.json``, or, when every story hashed to validation, the key of the last story (the
    caller then prepares again with only that story for validation)."""
    seen = _SeenKeys()
    valid = _TokenFile(out / "valid.bin")
    copies = [_TokenFile(out / f"train-{copy}.bin") for copy in range(recipe.augment_copies)]
    tally = {"train": _Tally(), "valid": _Tally()}
    last_train: tuple[str, int] | None = None  # raw text and size of the last training story
    last_key = None
    try:
        for job, batch in _run_jobs(corpus.jobs("preparing data", progress), recipe, workers):
            if not batch.keys:
                continue
            fresh = seen.add(batch.keys)
            in_valid = np.array(batch.in_valid, dtype=bool)
            n_bytes = np.array(batch.n_bytes, dtype=np.int64)
            for name, mask in (("train", fresh & ~in_valid), ("valid", fresh & in_valid)):
                tally[name].stories += int(mask.sum())
                tally[name].bytes += int(n_bytes[mask].sum())
            valid.add(batch.parts[0], fresh)
            for copy, token_file in enumerate(copies):
                token_file.add(batch.parts[1 + copy], fresh)
            kept = np.flatnonzero(fresh)
            if kept.size:
                last_key = batch.keys[kept[-1]]
            kept_train = np.flatnonzero(fresh & ~in_valid)
            if kept_train.size:
                i = int(kept_train[-1])
                last_train = job.stories[batch.raw_index[i]], batch.n_bytes[i]
        hash_split = not corpus.valid_files and recipe.valid_key is None
        if hash_split and not tally["valid"].stories and last_train is not None:
            # Tiny corpora: the last story is the validation split.
            for token_file in copies:
                token_file.drop_last()
            text, size = last_train
            valid.add_tokens(tokenizer.encode(unconditioned_example(clean_story(text))))
            tally["train"] = _Tally(tally["train"].stories - 1, tally["train"].bytes - size)
            tally["valid"] = _Tally(1, size)
        if (hash_split and not tally["train"].stories and tally["valid"].stories > 1
                and last_key is not None):
            return last_key
        if not tally["train"].stories or not tally["valid"].stories:
            raise _split_error(corpus.path, tally["train"].stories, tally["valid"].stories)
    finally:
        for token_file in (valid, *copies):
            token_file.close()
    _join(copies, out / "train.bin")
    lengths = {"train": np.concatenate([c.example_lengths() for c in copies]),
               "valid": valid.example_lengths()}
    for name, split_lengths in lengths.items():
        starts = np.zeros(split_lengths.size, dtype=np.int64)
        np.cumsum(split_lengths[:-1], out=starts[1:])
        np.save(out / f"{name}_starts.npy", starts)
    return {
        "train_stories": tally["train"].stories, "valid_stories": tally["valid"].stories,
        "train_tokens": sum(c.n_tokens for c in copies), "valid_tokens": valid.n_tokens,
        "train_bytes": tally["train"].bytes, "valid_bytes": tally["valid"].bytes,
    }


def _join(parts: list[_TokenFile], target: Path) -> None:
    """Concatenate the per-copy token files into ``target`` (removing them)."""
    first = parts[0].path
    with open(first, "ab") as out:
        for part in parts[1:]:
            with open(part.path, "rb") as handle:
                shutil.copyfileobj(handle, out, 16 << 20)
            part.path.unlink()
    first.rename(target)


def _train_tokenizer(corpus: _Corpus, recipe: _Recipe, vocab_size: int, workers: int,
                     progress: ProgressFn | None) -> tuple[StoryTokenizer, _Recipe]:
    """A tokenizer trained on the sample of :func:`_sample_texts`, and the recipe (which names
    the one validation story when every story's hash chose validation)."""
    texts, last_key, n_stories = _sample_texts(corpus, recipe, workers,
                                               TOKENIZER_SAMPLE_CHARS, progress)
    if not texts and n_stories > 1 and not corpus.valid_files:
        recipe = replace(recipe, valid_key=last_key)
        texts, _, _ = _sample_texts(corpus, recipe, workers, TOKENIZER_SAMPLE_CHARS, progress)
    if not texts:
        raise _split_error(corpus.path, 0, n_stories)
    if progress:
        progress("training tokenizer", 0, 1)
    tokenizer = train_tokenizer(texts, vocab_size)
    if progress:
        progress("training tokenizer", 1, 1)
    return tokenizer, recipe


def prepare_data(
    data_path: str | Path,
    cache_root: str | Path,
    *,
    tokenizer: StoryTokenizer | None = None,
    vocab_size: int = 8000,
    seed: int = 0,
    field_dropout: float = 0.3,
    name_swap: float = 0.9,
    augment_copies: int = 1,
    valid_fraction: float = 0.05,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> tuple[StoryTokenizer, PreparedData]:
    """Read, clean, split, condition and tokenize a corpus, caching the result.

    The cache lives under ``cache_root``, keyed by a hash of the raw files (names, sizes and
    bytes) and every setting, so a second run on the same data only re-hashes the files. When
    ``tokenizer`` is None a byte-level BPE of ``vocab_size`` is trained on the conditioned
    training texts of the first :data:`TOKENIZER_SAMPLE_CHARS` characters (and cached too).
    ``workers`` processes prepare the stories (default: one per core for corpora over
    :data:`PARALLEL_MIN_BYTES`, else none; ``GRAIN_DATA_WORKERS`` overrides); the result does
    not depend on it.  ``progress(label, done, total)`` is told the bytes read of each step.
    """
    if augment_copies < 1:
        raise SagaError("augment_copies must be at least 1")
    corpus = _Corpus(Path(data_path))
    corpus.check_enough_stories()
    settings = {"seed": seed, "field_dropout": field_dropout, "name_swap": name_swap,
                "augment_copies": augment_copies, "vocab_size": vocab_size,
                "valid_fraction": valid_fraction, "sample_chars": TOKENIZER_SAMPLE_CHARS}
    root = Path(cache_root)
    key = corpus.key(settings, progress)
    n_workers = _worker_count(corpus.total_bytes, workers)
    # With validation files, the stories of the other files are all for training.
    cut = 0 if corpus.valid_files else _valid_cut(valid_fraction)
    recipe = _Recipe(seed, field_dropout, name_swap, augment_copies, cut)

    if tokenizer is None:
        tokenizer_file = root / f"tokenizer-{key}.json"
        if tokenizer_file.is_file():
            with contextlib.suppress(SagaError):  # a damaged tokenizer is trained again
                tokenizer = StoryTokenizer.load(tokenizer_file)
        if tokenizer is None:
            tokenizer, recipe = _train_tokenizer(corpus, recipe, vocab_size, n_workers, progress)
            tokenizer.save(tokenizer_file)
    if tokenizer.vocab_size > np.iinfo(np.uint16).max:
        raise SagaError("vocabularies over 65535 tokens are not supported")
    cache_dir = root / f"{key}-{tokenizer.fingerprint()}"
    if (cache_dir / "meta.json").is_file():
        try:
            return tokenizer, _load_cache(cache_dir)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below

    with atomic_directory(cache_dir) as tmp:
        tokenizer.save(tmp / "tokenizer.json")
        recipe = replace(recipe, tokenizer_json=(tmp / "tokenizer.json").read_text())
        counts = _write_splits(corpus, recipe, tokenizer, n_workers, tmp, progress)
        if isinstance(counts, bytes):
            recipe = replace(recipe, valid_key=counts)
            counts = _write_splits(corpus, recipe, tokenizer, n_workers, tmp, progress)
            assert not isinstance(counts, bytes)
        meta = {"version": DATA_FORMAT_VERSION, **settings, **counts,
                "source": str(Path(data_path).resolve()),
                "files": [f.name for f in corpus.files]}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return tokenizer, _load_cache(cache_dir)


def _load_cache(cache_dir: Path) -> PreparedData:
    """The splits of a cache, token files memory-mapped; ValueError if anything is off."""
    meta = json.loads((cache_dir / "meta.json").read_text())
    if meta.get("version") != DATA_FORMAT_VERSION:
        raise ValueError("old cache format")

    def split(name: str) -> TokenSplit:
        tokens = np.memmap(cache_dir / f"{name}.bin", dtype=np.uint16, mode="r")
        starts = np.load(cache_dir / f"{name}_starts.npy", allow_pickle=False)
        if (tokens.size != meta[f"{name}_tokens"] or starts.dtype != np.int64
                or not starts.size or starts[0] != 0 or starts[-1] >= tokens.size):
            raise ValueError(f"damaged {name} split")
        return TokenSplit(tokens=tokens, starts=starts, n_bytes=int(meta[f"{name}_bytes"]))

    return PreparedData(train=split("train"), valid=split("valid"), cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def window_starts(split: TokenSplit, context: int) -> np.ndarray:
    """Offsets where training windows of ``context + 1`` tokens may begin.

    Windows begin at story starts (so the control prefix leads, as in generation); stories
    longer than the context also get starts every half context so their ends are seen too.
    """
    starts = np.asarray(split.starts, dtype=np.int64)
    lengths = np.diff(starts, append=split.n_tokens)
    half = max(1, context // 2)
    long = lengths > context
    # A story of length L > context gets starts s + half, s + 2 half, ... below s + L.
    counts = (lengths[long] - 1) // half
    first = np.repeat(starts[long] + half, counts)
    step = np.arange(first.size) - np.repeat(np.cumsum(counts) - counts, counts)
    candidates = np.concatenate([starts, first + half * step])
    usable = np.sort(candidates[candidates + context + 1 <= split.n_tokens])
    if usable.size == 0:
        raise SagaError(
            f"the training data has only {split.n_tokens} tokens: need more than the "
            f"context length ({context}); add stories or use a smaller --context_length")
    return usable


def sample_batch(split: TokenSplit, starts: np.ndarray, batch_size: int, context: int,
                 seed: int, step: int) -> np.ndarray:
    """The ``(batch_size, context + 1)`` tokens of ``step``: same seed and step, same batch."""
    rng = np.random.default_rng([seed, step])
    chosen = starts[rng.integers(0, starts.size, size=batch_size)]
    return np.asarray(split.tokens[chosen[:, None] + np.arange(context + 1)], dtype=np.int32)


def eval_chunks(split: TokenSplit, context: int, batch_size: int,
                max_batches: int = 0) -> Iterator[np.ndarray]:
    """Consecutive, non-overlapping windows covering the split, batched (each row is L+1 long)."""
    length = min(context, split.n_tokens - 1)
    n_windows = (split.n_tokens - 1) // length
    offsets = np.arange(n_windows) * length
    for batch, i in enumerate(range(0, n_windows, batch_size)):
        if max_batches and batch >= max_batches:
            return
        rows = offsets[i : i + batch_size]
        yield np.asarray(split.tokens[rows[:, None] + np.arange(length + 1)], dtype=np.int32)
