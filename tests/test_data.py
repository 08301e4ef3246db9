"""Reading, cleaning, splitting and caching story corpora."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, ROOT, one_line_story, peak_rss_mb, split_texts

from saga_model import labels as lab
from saga_model.data import (
    StreamedEvalChunks,
    TokenSplit,
    clean_story,
    eval_batch_count,
    eval_chunks,
    prepare_data,
    read_stories,
    sample_batch,
    window_starts,
)
from saga_model.errors import SagaError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_clean_story_repairs_and_normalises() -> None:
    raw = "  â€œHi,â€\x9d said   Tom.\r\n\r\n\r\n\tIt’s “fun”… <|theme|>really!  "
    assert clean_story(raw) == '"Hi," said Tom.\n\nIt\'s "fun"... really!'
    assert clean_story("Cafe\u0301") == "Café"  # NFC


def test_reads_separated_stories_and_one_story_per_file(tmp_path: Path) -> None:
    write(tmp_path / "many.txt", "One.\n<|endoftext|>\nTwo.\n<|endoftext|>\n\n<|endoftext|>\nOne.")
    write(tmp_path / "sub" / "single.txt", "Three has\nlines.")
    write(tmp_path / "README.md", "not a story")
    assert read_stories(tmp_path) == ["One.", "Two.", "Three has\nlines."]
    assert read_stories(tmp_path / "many.txt") == ["One.", "Two."]


def test_missing_empty_and_storyless_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SagaError, match="not found"):
        read_stories(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SagaError, match=r"no \.txt files"):
        read_stories(tmp_path / "empty")
    write(tmp_path / "blank" / "a.txt", "\n\n<|endoftext|>\n   \n")
    with pytest.raises(SagaError, match="no stories found"):
        prepare_data(tmp_path / "blank", tmp_path / "cache", vocab_size=300)
    write(tmp_path / "one" / "a.txt", "Just one story.")
    with pytest.raises(SagaError, match="at least 2 stories"):
        prepare_data(tmp_path / "one", tmp_path / "cache", vocab_size=300)


def prepared_splits(path: Path, cache: Path, valid_fraction: float = 0.05
                    ) -> tuple[list[str], list[str]]:
    """The stories of prepare_data's training and validation splits (no field or name changes,
    so each training example is its story)."""
    tokenizer, data = prepare_data(path, cache, vocab_size=300, valid_fraction=valid_fraction,
                                   field_dropout=1.0, name_swap=0.0)
    return split_texts(tokenizer, data.train), split_texts(tokenizer, data.valid)


def test_valid_txt_is_the_validation_split(corpus_dir: Path, tmp_path: Path) -> None:
    train, valid = prepared_splits(corpus_dir, tmp_path)
    assert train == read_stories(corpus_dir / "train.txt")
    assert valid == read_stories(corpus_dir / "valid.txt")


def test_hash_split_is_deterministic_and_order_free(tmp_path: Path) -> None:
    stories = [f"Story number {i} about a cat." for i in range(200)]
    write(tmp_path / "a" / "all.txt", "\n<|endoftext|>\n".join(stories))
    write(tmp_path / "b" / "all.txt", "\n<|endoftext|>\n".join(reversed(stories)))
    train_a, valid_a = prepared_splits(tmp_path / "a", tmp_path / "cache", 0.1)
    _, valid_b = prepared_splits(tmp_path / "b", tmp_path / "cache", 0.1)
    assert set(valid_a) == set(valid_b)
    assert 5 <= len(valid_a) <= 40
    assert sorted(train_a + valid_a) == sorted(stories)


def test_prepare_data_caches_tokens(corpus_dir: Path, tmp_path: Path) -> None:
    tokenizer, data = prepare_data(corpus_dir, tmp_path, vocab_size=800, seed=1)
    assert data.train.tokens.dtype == np.uint16
    assert isinstance(data.train.tokens, np.memmap)
    assert data.train.starts.size == 150 and data.valid.starts.size == 15
    # Every training example begins with a control token; validation ones with <|story|>.
    assert (data.train.tokens[data.train.starts] < tokenizer.n_control).all()
    assert (data.valid.tokens[data.valid.starts] == tokenizer.story_id).all()
    assert int((data.train.tokens == tokenizer.eos_id).sum()) == 150
    again_tokenizer, again = prepare_data(corpus_dir, tmp_path, vocab_size=800, seed=1)
    assert again.cache_dir == data.cache_dir
    assert again_tokenizer.fingerprint() == tokenizer.fingerprint()
    assert np.array_equal(again.train.tokens, data.train.tokens)
    _, other = prepare_data(corpus_dir, tmp_path, vocab_size=800, seed=2)
    assert other.cache_dir != data.cache_dir  # different augmentation, different cache


def test_augment_copies_multiply_training_examples(corpus_dir: Path, tmp_path: Path) -> None:
    _, data = prepare_data(corpus_dir, tmp_path, vocab_size=800, augment_copies=2)
    assert data.train.starts.size == 300


def test_batches_are_reproducible_per_step() -> None:
    split = TokenSplit(tokens=np.arange(1000, dtype=np.uint16),
                       starts=np.arange(0, 1000, 100), n_bytes=0)
    starts = window_starts(split, 128)  # stories (100 tokens) fit: windows start at stories
    a = sample_batch(split, starts, 4, 128, seed=0, step=5)
    assert a.shape == (4, 129)
    assert np.array_equal(a, sample_batch(split, starts, 4, 128, seed=0, step=5))
    assert not np.array_equal(a, sample_batch(split, starts, 4, 128, seed=0, step=6))
    assert set(a[:, 0]) <= set(range(0, 1000, 100))


def test_long_stories_get_extra_window_starts() -> None:
    split = TokenSplit(tokens=np.zeros(1000, np.uint16), starts=np.array([0, 900]), n_bytes=0)
    assert list(window_starts(split, 200)) == [0, 100, 200, 300, 400, 500, 600, 700]
    tiny = TokenSplit(tokens=np.zeros(10, np.uint16), starts=np.array([0]), n_bytes=0)
    with pytest.raises(SagaError, match="only 10 tokens"):
        window_starts(tiny, 32)


def test_eval_chunks_cover_the_split_once() -> None:
    split = TokenSplit(tokens=np.arange(101, dtype=np.uint16), starts=np.array([0]), n_bytes=0)
    chunks = np.concatenate(list(eval_chunks(split, 25, batch_size=3)))
    assert chunks.shape == (4, 26)
    assert np.array_equal(np.concatenate([c[1:] for c in chunks]), np.arange(1, 101))


def plain_windows(tokens: np.ndarray, context: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive windows of ``context + 1`` tokens (shorter if the tokens are), each
    starting at the last token of the one before, ``batch_size`` to a batch."""
    length = min(context, tokens.size - 1)
    rows = np.arange((tokens.size - 1) // length)[:, None] * length + np.arange(length + 1)
    windows = tokens[rows].astype(np.int32)
    return [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]


@pytest.mark.parametrize("n_tokens", [2, 9, 26, 100, 101, 102, 151, 1000])
def test_eval_windows_are_the_same_however_the_tokens_arrive(n_tokens: int) -> None:
    tokens = np.random.default_rng(n_tokens).integers(0, 8000, n_tokens).astype(np.uint16)
    split = TokenSplit(tokens=tokens, starts=np.array([0]), n_bytes=0)
    expected = plain_windows(tokens, 25, batch_size=3)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(0, n_tokens, 6))
    windows = StreamedEvalChunks(25, 3)
    streamed = [batch for piece in np.split(tokens, cuts) for batch in windows.add(piece)]
    streamed += windows.finish()
    assert windows.n_tokens == n_tokens
    for got in (streamed, list(eval_chunks(split, 25, batch_size=3))):
        assert len(got) == len(expected) == eval_batch_count(split, 25, 3)
        for batch, want in zip(got, expected, strict=True):
            assert batch.dtype == np.int32 and np.array_equal(batch, want)
    assert len(list(eval_chunks(split, 25, batch_size=3, max_batches=2))) == \
        min(2, len(expected)) == eval_batch_count(split, 25, 3, max_batches=2)


def test_a_long_one_line_story_is_prepared_in_bounded_memory(corpus_dir: Path,
                                                            tmp_path: Path) -> None:
    # 4 MB of one story, tokenized whole, took 680 MB (and 3.1 GB for 20 MB).
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text((corpus_dir / "train.txt").read_text())
    (data / "long.txt").write_text(one_line_story(4_000_000) + "\n")
    script = ("import sys; from saga_model.data import prepare_data; from saga_model.tokenizer "
              "import StoryTokenizer; _, d = prepare_data(sys.argv[1], sys.argv[2], "
              "tokenizer=StoryTokenizer.load(sys.argv[3])); print(d.train.n_tokens, "
              "d.valid.n_tokens, file=sys.stderr)")
    peak, err = peak_rss_mb("-c", script, str(data), str(tmp_path / "cache"),
                            str(ROOT / "saga_model/pretrained/tokenizer.json"),
                            env={"GRAIN_DATA_WORKERS": "1"})
    assert sum(map(int, err.split())) > 900_000, err
    assert peak < 350, f"peak RSS {peak:.0f} MB"


GOLDEN_LABELS = FIXTURES / "labels_golden.jsonl"


def label_record(story: str, index: int) -> dict[str, object]:
    """What the labeller and the name swapper make of one fixture story."""
    labels = lab.derive_labels(story)
    swapped, names = lab.swap_names(story, labels.characters, random.Random(index))
    return {"theme": labels.theme, "tone": labels.tone, "genre": labels.genre,
            "characters": list(labels.characters),
            "swapped": [f"{old} -> {new}" for old, new in zip(labels.characters, names,
                                                               strict=True)],
            "swapped_sha256": hashlib.sha256(swapped.encode()).hexdigest()[:16]}


def test_labels_and_name_swaps_of_the_fixture_corpus_are_unchanged(corpus_dir: Path) -> None:
    """The labeller gives what the original one gave, story by story (recorded in
    labels_golden.jsonl; after a deliberate change, ``python tests/test_data.py`` rewrites it)."""
    expected = [json.loads(line) for line in GOLDEN_LABELS.read_text().splitlines()]
    stories = read_stories(corpus_dir)
    assert len(stories) == len(expected)
    changed = [(i, want, got) for i, (story, want) in enumerate(zip(stories, expected, strict=True))
               if (got := label_record(story, i)) != want]
    if changed:
        i, want, got = changed[0]
        differences = {key: (want[key], got[key]) for key in want if want[key] != got[key]}
        pytest.fail(f"{len(changed)} of {len(stories)} stories labelled differently; first: "
                    f"story {i} ({stories[i][:60]!r}...), (expected, got): {differences}")


if __name__ == "__main__":
    records = [label_record(s, i) for i, s in enumerate(read_stories(FIXTURES / "stories"))]
    GOLDEN_LABELS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
