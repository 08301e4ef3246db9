"""Preparing a corpus: the tokenizer, the token files of both splits, and the cache."""

from __future__ import annotations

import array
import contextlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..errors import SagaError
from ..text import clean_story
from ..tokenizer import StoryTokenizer, train_tokenizer
from .corpus import Corpus, ProgressFn, split_error, valid_cut
from .examples import PreparedData, TokenSplit, unconditioned_example
from .workers import Part, Recipe, run_jobs, worker_count

#: Bump when cleaning, labelling, splitting or the cache layout changes, so old caches are not
#: reused.
DATA_FORMAT_VERSION = 2
#: The tokenizer is trained on (at most) this many characters of conditioned training text,
#: taken from the start of the corpus.
TOKENIZER_SAMPLE_CHARS = 50_000_000

def _sample_texts(corpus: Corpus, recipe: Recipe, workers: int, limit: int,
                  progress: ProgressFn | None) -> tuple[list[str], bytes | None, int]:
    """(conditioned copy-0 texts of the first training stories, up to ``limit`` characters;
    key of the last story seen; number of distinct stories seen)."""
    texts: list[str] = []
    seen: set[bytes] = set()
    chars = 0
    last_key = None
    batches = run_jobs(corpus.jobs("sampling for the tokenizer", progress), recipe, workers)
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

    def add(self, part: Part, keep: np.ndarray) -> None:
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

    def add_tokens(self, ids: np.ndarray) -> None:
        """Append one example."""
        self.add(Part(ids.astype(np.uint16, copy=False), np.array([ids.size]), np.array([0])),
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


class _EveryStoryInValidation(Exception):
    """Every story of a corpus without validation files hashed to the validation split."""

    def __init__(self, last_key: bytes) -> None:
        super().__init__("every story hashed to validation")
        self.last_key = last_key  # key of the last story: the only one to keep for validation


@dataclass
class _Tally:
    """Stories of a split and their UTF-8 bytes."""

    stories: int = 0
    bytes: int = 0


def _write_splits(corpus: Corpus, recipe: Recipe, tokenizer: StoryTokenizer, workers: int,
                  out: Path, progress: ProgressFn | None) -> dict[str, int]:
    """Write ``train.bin``/``valid.bin`` and their starts into ``out``; returns the counts for
    ``meta.json``.  Raises :class:`_EveryStoryInValidation` when every story hashed to
    validation (the caller then prepares again with only the last story for validation)."""
    seen = _SeenKeys()
    valid = _TokenFile(out / "valid.bin")
    copies = [_TokenFile(out / f"train-{copy}.bin") for copy in range(recipe.augment_copies)]
    tally = {"train": _Tally(), "valid": _Tally()}
    last_train: tuple[str, int] | None = None  # raw text and size of the last training story
    last_key = None
    try:
        for job, batch in run_jobs(corpus.jobs("preparing data", progress), recipe, workers):
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
            valid.add_tokens(tokenizer.encode_flat([unconditioned_example(clean_story(text))])[0])
            tally["train"] = _Tally(tally["train"].stories - 1, tally["train"].bytes - size)
            tally["valid"] = _Tally(1, size)
        if (hash_split and not tally["train"].stories and tally["valid"].stories > 1
                and last_key is not None):
            raise _EveryStoryInValidation(last_key)
        if not tally["train"].stories or not tally["valid"].stories:
            raise split_error(corpus.path, tally["train"].stories, tally["valid"].stories)
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


def _train_tokenizer(corpus: Corpus, recipe: Recipe, vocab_size: int, workers: int,
                     progress: ProgressFn | None) -> tuple[StoryTokenizer, Recipe]:
    """A tokenizer trained on the sample of :func:`_sample_texts`, and the recipe (which names
    the one validation story when every story's hash chose validation)."""
    texts, last_key, n_stories = _sample_texts(corpus, recipe, workers,
                                               TOKENIZER_SAMPLE_CHARS, progress)
    if not texts and n_stories > 1 and not corpus.valid_files:
        recipe = replace(recipe, valid_key=last_key)
        texts, _, _ = _sample_texts(corpus, recipe, workers, TOKENIZER_SAMPLE_CHARS, progress)
    if not texts:
        raise split_error(corpus.path, 0, n_stories)
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
    Files named like ``valid.txt`` / ``TinyStories-valid.txt`` / ``val.jsonl`` form the
    validation split when a directory has them (stories also in a training file are dropped
    from it); otherwise each story goes to validation when a hash of its text falls below
    ``valid_fraction`` (deterministic, independent of file order), and if that leaves one split
    empty, the last story is the only validation story.
    ``workers`` processes prepare the stories (default: one per core for corpora over
    :data:`PARALLEL_MIN_BYTES`, else none; ``GRAIN_DATA_WORKERS`` overrides); the result does
    not depend on it.  ``progress(label, done, total)`` is told the bytes read of each step.
    """
    if augment_copies < 1:
        raise SagaError("augment_copies must be at least 1")
    corpus = Corpus(Path(data_path))
    corpus.check_enough_stories()
    settings = {"seed": seed, "field_dropout": field_dropout, "name_swap": name_swap,
                "augment_copies": augment_copies, "vocab_size": vocab_size,
                "valid_fraction": valid_fraction, "sample_chars": TOKENIZER_SAMPLE_CHARS}
    root = Path(cache_root)
    key = corpus.key({"version": DATA_FORMAT_VERSION, **settings}, progress)
    n_workers = worker_count(corpus.total_bytes, workers)
    # With validation files, the stories of the other files are all for training.
    cut = 0 if corpus.valid_files else valid_cut(valid_fraction)
    recipe = Recipe(seed, field_dropout, name_swap, augment_copies, cut)

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
        try:
            counts = _write_splits(corpus, recipe, tokenizer, n_workers, tmp, progress)
        except _EveryStoryInValidation as every:
            recipe = replace(recipe, valid_key=every.last_key)
            counts = _write_splits(corpus, recipe, tokenizer, n_workers, tmp, progress)
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
