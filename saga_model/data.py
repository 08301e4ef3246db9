"""Reading story corpora, cleaning, splitting, conditioning and the memory-mapped token cache."""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import labels as lab
from .atomic import atomic_directory
from .errors import SagaError
from .tokenizer import StoryTokenizer, train_tokenizer

#: Bump when cleaning, labelling or the example format changes, so old caches are not reused.
DATA_FORMAT_VERSION = 1
SEPARATOR = lab.END_OF_STORY

_MOJIBAKE = {
    "â€œ": "“", "â€\x9d": "”", "â€™": "’", "â€˜": "‘", "â€”": "—", "â€“": "–", "â€¦": "…",
}
_PUNCTUATION = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "…": "...", "\t": " "})
_CONTROL_LITERAL = re.compile(r"<\|[a-z_]+\|>")
_SPACES = re.compile(r"[ \u00a0\u2000-\u200b]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_VALID_NAME = re.compile(r"(^|[-_.])(valid|validation|val|dev)$")

ProgressFn = Callable[[str, int, int], None]


def clean_story(text: str) -> str:
    """Normalise one story: repair common mojibake, NFC, plain quotes, tidy whitespace.

    Control-token literals such as ``<|theme|>`` are removed so that text can never inject them.
    """
    for bad, good in _MOJIBAKE.items():
        text = text.replace(bad, good)
    text = unicodedata.normalize("NFC", text).translate(_PUNCTUATION)
    text = _CONTROL_LITERAL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def split_stories(text: str) -> list[str]:
    """Split TinyStories-format text (stories separated by ``<|endoftext|>``) into stories."""
    return [part for part in text.split(SEPARATOR) if part.strip()]


def _story_files(path: Path) -> list[Path]:
    if not path.exists():
        raise SagaError(f"data path not found: {path}")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SagaError(f"no .txt files found in {path}")
    return files


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SagaError(f"cannot read {file}: {exc.strerror}") from None


def read_stories(path: str | Path) -> list[str]:
    """All cleaned, de-duplicated stories in a file or a directory of ``.txt`` files.

    A file holds many stories separated by lines ``<|endoftext|>``, or one story.
    """
    return read_stories_from(_story_files(Path(path)))


def _dedupe(stories: Iterator[str] | list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for story in stories:
        if story and story not in seen:
            seen.add(story)
            unique.append(story)
    return unique


def _is_valid_file(file: Path) -> bool:
    return bool(_VALID_NAME.search(file.stem.lower()))


def load_splits(path: str | Path, valid_fraction: float) -> tuple[list[str], list[str]]:
    """Train and validation stories of a corpus.

    Files named like ``valid.txt`` / ``TinyStories-valid.txt`` / ``val.txt`` form the validation
    split when a directory has them; otherwise each story goes to validation when a hash of its
    text falls below ``valid_fraction`` (deterministic, independent of file order).
    """
    files = _story_files(Path(path))
    valid_files = [f for f in files if _is_valid_file(f)] if len(files) > 1 else []
    if valid_files and len(valid_files) < len(files):
        train = read_stories_from(f for f in files if f not in valid_files)
        valid_set = set(train)
        valid = [s for s in read_stories_from(valid_files) if s not in valid_set]
    else:
        stories = read_stories_from(files)
        cut = int(valid_fraction * 2**32)
        in_valid = [_story_hash(s) < cut for s in stories]
        if all(in_valid) or not any(in_valid):  # tiny corpora: keep exactly one for validation
            in_valid = [i == len(stories) - 1 for i in range(len(stories))]
        train = [s for s, v in zip(stories, in_valid, strict=True) if not v]
        valid = [s for s, v in zip(stories, in_valid, strict=True) if v]
    if not train or not valid:
        raise SagaError(f"no stories found in {path}" if not train and not valid
                        else f"need at least 2 stories in {path} (one for validation)")
    return train, valid


def read_stories_from(files: Iterator[Path] | list[Path]) -> list[str]:
    """Cleaned, de-duplicated stories of several files, in order."""
    raw: list[str] = []
    for file in files:
        raw.extend(split_stories(_read_text(file)))
    return _dedupe(clean_story(s) for s in raw)


def _story_hash(story: str) -> int:
    return int.from_bytes(hashlib.blake2b(story.encode(), digest_size=4).digest(), "big")


def conditioned_example(story: str, labels: lab.StoryLabels, rng: random.Random,
                        field_dropout: float, name_swap: float) -> str:
    """Training text of one story: control prefix (some fields dropped, names swapped) + story."""
    if labels.characters and rng.random() < name_swap:
        story, names = lab.swap_names(story, labels.characters, rng)
        labels = lab.StoryLabels(labels.theme, labels.tone, labels.genre, names)
    return lab.control_prefix(lab.drop_fields(labels, rng, field_dropout)) + story + SEPARATOR


def unconditioned_example(story: str) -> str:
    """Text of a story with an empty control prefix (how validation loss is measured)."""
    return lab.STORY_START + story + SEPARATOR


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


def _fingerprint(train: list[str], valid: list[str], params: dict[str, float | int]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": DATA_FORMAT_VERSION, **params}, sort_keys=True).encode())
    for split in (train, valid):
        h.update(len(split).to_bytes(8, "little"))
        for story in split:
            h.update(story.encode())
            h.update(b"\0")
    return h.hexdigest()[:24]


def _encode(tokenizer: StoryTokenizer, texts: list[str], progress: ProgressFn | None,
            label: str, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    if tokenizer.vocab_size > np.iinfo(np.uint16).max:
        raise SagaError("vocabularies over 65535 tokens are not supported")
    pieces: list[np.ndarray] = []
    for i in range(0, len(texts), chunk):
        pieces.extend(np.asarray(ids, dtype=np.uint16) for ids in
                      tokenizer.encode_batch(texts[i : i + chunk]))
        if progress:
            progress(label, min(i + chunk, len(texts)), len(texts))
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.concatenate(pieces), starts


def _label_all(stories: list[str], progress: ProgressFn | None) -> list[lab.StoryLabels]:
    result = []
    for i, story in enumerate(stories):
        result.append(lab.derive_labels(story))
        if progress and (i % 2000 == 0 or i == len(stories) - 1):
            progress("labelling", i + 1, len(stories))
    return result


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
) -> tuple[StoryTokenizer, PreparedData]:
    """Read, clean, split, condition and tokenize a corpus, caching the result.

    The cache lives under ``cache_root`` keyed by a hash of the cleaned stories and every
    setting, so a second run on the same data starts instantly. When ``tokenizer`` is None a
    byte-level BPE of ``vocab_size`` is trained on the training examples (and cached too).
    """
    train, valid = load_splits(data_path, valid_fraction)
    params = {"seed": seed, "field_dropout": field_dropout, "name_swap": name_swap,
              "augment_copies": augment_copies, "vocab_size": vocab_size}
    root = Path(cache_root)
    base_key = _fingerprint(train, valid, params)
    texts: list[str] = []

    def training_texts() -> list[str]:
        if not texts:
            story_labels = _label_all(train, progress)
            for copy in range(augment_copies):
                rng = random.Random(f"{seed}-{copy}")
                texts.extend(conditioned_example(story, labels, rng, field_dropout, name_swap)
                             for story, labels in zip(train, story_labels, strict=True))
        return texts

    if tokenizer is None:
        tokenizer_file = root / f"tokenizer-{base_key}.json"
        try:
            tokenizer = StoryTokenizer.load(tokenizer_file)
        except SagaError:
            if progress:
                progress("training tokenizer", 0, 1)
            tokenizer = train_tokenizer(training_texts()[: len(train)], vocab_size)
            tokenizer.save(tokenizer_file)
    cache_dir = root / f"{base_key}-{tokenizer.fingerprint()}"
    if (cache_dir / "meta.json").is_file():
        try:
            return tokenizer, _load_cache(cache_dir)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below

    train_tokens, train_starts = _encode(tokenizer, training_texts(), progress,
                                         "tokenizing train")
    valid_tokens, valid_starts = _encode(
        tokenizer, [unconditioned_example(s) for s in valid], progress, "tokenizing valid")
    with atomic_directory(cache_dir) as tmp:
        np.save(tmp / "train.npy", train_tokens)
        np.save(tmp / "train_starts.npy", train_starts)
        np.save(tmp / "valid.npy", valid_tokens)
        np.save(tmp / "valid_starts.npy", valid_starts)
        meta = {
            "version": DATA_FORMAT_VERSION, **params,
            "train_stories": len(train), "valid_stories": len(valid),
            "train_tokens": int(train_tokens.size), "valid_tokens": int(valid_tokens.size),
            "train_bytes": sum(len(s.encode()) for s in train),
            "valid_bytes": sum(len(s.encode()) for s in valid),
            "source": str(Path(data_path).resolve()),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return tokenizer, _load_cache(cache_dir)


def _load_cache(cache_dir: Path) -> PreparedData:
    meta = json.loads((cache_dir / "meta.json").read_text())

    def split(name: str) -> TokenSplit:
        return TokenSplit(
            tokens=np.load(cache_dir / f"{name}.npy", mmap_mode="r", allow_pickle=False),
            starts=np.load(cache_dir / f"{name}_starts.npy", allow_pickle=False),
            n_bytes=int(meta[f"{name}_bytes"]),
        )

    return PreparedData(train=split("train"), valid=split("valid"), cache_dir=cache_dir)


def window_starts(split: TokenSplit, context: int) -> np.ndarray:
    """Offsets where training windows of ``context + 1`` tokens may begin.

    Windows begin at story starts (so the control prefix leads, as in generation); stories
    longer than the context also get starts every half context so their ends are seen too.
    """
    starts = split.starts
    ends = np.append(starts[1:], split.n_tokens)
    extra = [np.arange(s + context // 2, e, context // 2)
             for s, e in zip(starts, ends, strict=True) if e - s > context]
    candidates = np.concatenate([starts, *extra]) if extra else starts
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
