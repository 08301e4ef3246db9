"""Story file formats, the streaming preparation pipeline, its cache, and the scale benchmark."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli, split_texts

from benchmarks.report import render_prepare
from saga_model.data import (
    TokenSplit,
    conditioned_example,
    prepare_data,
    read_stories,
    stream_stories,
    window_starts,
)
from saga_model.data import corpus as corpus_module
from saga_model.data.corpus import story_key
from saga_model.data.examples import example_rng
from saga_model.data.prepare import _SeenKeys
from saga_model.errors import SagaError
from saga_model.labels import derive_labels

STORIES = [f"Story {i}: Tom saw a dog named Spot. They played in the park." for i in range(12)]


def text_of(stories: list[str]) -> str:
    return "".join(f"{s}\n<|endoftext|>\n" for s in stories)


def test_text_jsonl_and_gzip_files_in_one_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(text_of(STORIES[:4]))
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps({"text": s, "id": i}) for i, s in enumerate(STORIES[4:7])) + "\n\n")
    with gzip.open(tmp_path / "c.txt.gz", "wt") as handle:
        handle.write(text_of(STORIES[7:10]))
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": text_of(STORIES[10:])}))  # separators inside a record
    (tmp_path / "README.md").write_text("not a story")
    (tmp_path / ".hidden.txt").write_text("not read either")
    (tmp_path / "big.txt.part").write_text("an unfinished download")
    assert read_stories(tmp_path) == STORIES
    assert read_stories(tmp_path / "c.txt.gz") == STORIES[7:10]


def test_windows_line_endings_and_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfOne.\r\n<|endoftext|>\r\nTwo\rlines.\r\n")
    assert read_stories(tmp_path / "a.txt") == ["One.", "Two\nlines."]


def test_separators_split_across_read_chunks(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text(text_of(STORIES))
    monkeypatch.setattr(corpus_module, "_READ_CHARS", 5)
    assert read_stories(tmp_path) == STORIES


def test_streamed_stories_are_the_stories_read_with_the_bytes_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text(text_of(STORIES[:7] + STORIES[:2]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": s}) + "\n"
                                              for s in STORIES[5:]))
    monkeypatch.setattr(corpus_module, "_READ_CHARS", 7)
    streamed = list(stream_stories(tmp_path))
    assert [s for s, _, _ in streamed] == read_stories(tmp_path) == STORIES
    total = (tmp_path / "a.txt").stat().st_size + (tmp_path / "b.jsonl").stat().st_size
    read = [r for _, r, _ in streamed]
    assert read == sorted(read) and read[0] > 0 and read[-1] <= total
    assert {t for _, _, t in streamed} == {total}


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(SagaError, match=r"bad\.jsonl, line 2: expected an object with a \"text\""):
        read_stories(tmp_path / "bad.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(SagaError, match=r"line 2: not valid JSON"):
        read_stories(tmp_path / "bad.jsonl")
    (tmp_path / "bad.txt.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(SagaError, match=r"cannot read .*bad\.txt\.gz"):
        read_stories(tmp_path / "bad.txt.gz")


def test_parquet_text_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": STORIES, "n": list(range(12))}), tmp_path / "a.parquet",
                   row_group_size=5)
    assert read_stories(tmp_path) == STORIES
    pq.write_table(pa.table({"story": STORIES}), tmp_path / "a.parquet")
    with pytest.raises(SagaError, match=r'has no "text" column \(it has: story\)'):
        read_stories(tmp_path)


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SagaError) as error:
        read_stories(tmp_path)
    assert str(error.value) == ("reading .parquet needs pyarrow: "
                                "pip install 'grain-de-saga[parquet]'")


def test_gzipped_validation_file_is_the_validation_split(tmp_path: Path) -> None:
    (tmp_path / "stories-train.txt").write_text(text_of(STORIES[:9]))
    with gzip.open(tmp_path / "stories-valid.txt.gz", "wt") as handle:
        handle.write(text_of(STORIES[8:]))  # STORIES[8] is also a training story: dropped
    tokenizer, data = prepare_data(tmp_path, tmp_path / "cache", vocab_size=300,
                                   field_dropout=1.0, name_swap=0.0)
    train, valid = split_texts(tokenizer, data.train), split_texts(tokenizer, data.valid)
    assert (train, valid) == (STORIES[:9], STORIES[9:])


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_tiny_corpus_keeps_the_last_story_for_validation(tmp_path: Path,
                                                         fraction: float) -> None:
    (tmp_path / "all.txt").write_text(text_of(STORIES[:3]))
    tokenizer, data = prepare_data(tmp_path, tmp_path / "cache", vocab_size=300,
                                   valid_fraction=fraction, field_dropout=1.0, name_swap=0.0)
    # Again with that tokenizer given: the split is then decided while writing the tokens.
    _, again = prepare_data(tmp_path, tmp_path / "cache-2", tokenizer=tokenizer,
                            valid_fraction=fraction, field_dropout=1.0, name_swap=0.0)
    for prepared in (data, again):
        assert split_texts(tokenizer, prepared.train) == STORIES[:2]
        assert split_texts(tokenizer, prepared.valid) == [STORIES[2]]
        assert prepared.valid.n_bytes == len(STORIES[2].encode())


def test_examples_match_direct_encoding(corpus_dir: Path, tmp_path: Path) -> None:
    """The token streams are the examples' texts encoded one by one, in corpus order."""
    tokenizer, data = prepare_data(corpus_dir, tmp_path, vocab_size=600, seed=3)
    train, valid = read_stories(corpus_dir / "train.txt"), read_stories(corpus_dir / "valid.txt")
    ends = np.append(data.train.starts[1:], data.train.n_tokens)
    for i in (0, 1, 77, 149):
        key = story_key(train[i])
        labels = derive_labels(train[i])
        text = conditioned_example(train[i], labels, example_rng(3, 0, key),
                                   0.3, 0.9)
        tokens = data.train.tokens[data.train.starts[i]:ends[i]]
        assert tokens.tolist() == tokenizer.encode(text)
    first_valid = data.valid.tokens[: data.valid.starts[1]]
    assert first_valid.tolist() == tokenizer.encode(f"<|story|>{valid[0]}<|endoftext|>")
    assert data.train.n_bytes == sum(len(s.encode()) for s in train)


def cache_files(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.iterdir())}


def test_parallel_preparation_is_byte_identical(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    stories = (ROOT / "tests" / "fixtures" / "stories" / "train.txt").read_text()
    (corpus / "part-1.txt").write_text(stories)
    (corpus / "part-2.txt").write_text(stories.replace("Tom", "Kim"))  # new stories, and
    (corpus / "part-3.txt").write_text(stories)  # a file of duplicates only
    monkeypatch.setattr(corpus_module, "_JOB_CHARS", 20_000)  # many jobs per worker
    serial_tok, serial = prepare_data(corpus, tmp_path / "serial", vocab_size=500,
                                      augment_copies=2, workers=1)
    parallel_tok, parallel = prepare_data(corpus, tmp_path / "parallel", vocab_size=500,
                                          augment_copies=2, workers=2)
    assert serial_tok.fingerprint() == parallel_tok.fingerprint()
    assert cache_files(serial.cache_dir) == cache_files(parallel.cache_dir)
    meta = json.loads((serial.cache_dir / "meta.json").read_text())
    assert meta["train_stories"] + meta["valid_stories"] == len(read_stories(corpus))
    assert serial.train.starts.size == 2 * meta["train_stories"]


def test_cache_is_keyed_by_file_bytes_reused_and_repaired(corpus_dir: Path,
                                                          tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "valid.txt"):
        (corpus / name).write_bytes((corpus_dir / name).read_bytes())
    steps: list[str] = []

    def progress(label: str, done: int, total: int) -> None:
        if label not in steps:
            steps.append(label)

    _, first = prepare_data(corpus, tmp_path / "cache", vocab_size=500, progress=progress)
    assert steps == ["checking data", "sampling for the tokenizer", "training tokenizer",
                     "preparing data"]
    steps.clear()
    _, again = prepare_data(corpus, tmp_path / "cache", vocab_size=500, progress=progress)
    assert steps == ["checking data"] and again.cache_dir == first.cache_dir
    expected = cache_files(first.cache_dir)
    with open(first.cache_dir / "train.bin", "r+b") as handle:  # a damaged cache is rebuilt
        handle.truncate(100)
    _, repaired = prepare_data(corpus, tmp_path / "cache", vocab_size=500, progress=progress)
    assert steps[-1] == "preparing data" and cache_files(repaired.cache_dir) == expected
    text = (corpus / "valid.txt").read_bytes()  # same size, one byte different: a new key
    (corpus / "valid.txt").write_bytes(text.replace(b"Once", b"Onc3", 1))
    _, changed = prepare_data(corpus, tmp_path / "cache", vocab_size=500)
    assert changed.cache_dir.name.split("-")[0] != first.cache_dir.name.split("-")[0]


def test_seen_keys_find_repeats_across_merges() -> None:
    seen = _SeenKeys(merge_every=4)
    keys = [bytes([i]) * 8 for i in range(10)]
    assert seen.add(keys[:3] + keys[:1]).tolist() == [True, True, True, False]
    assert seen.add(keys[2:6]).tolist() == [False, True, True, True]  # merged after this
    assert seen.add([keys[9], keys[5], keys[0], keys[9]]).tolist() == [True, False, False, False]
    assert seen.add([]).tolist() == []


def test_window_starts_match_the_simple_definition() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 700, size=300)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    split = TokenSplit(tokens=np.zeros(int(lengths.sum()), np.uint16), starts=starts, n_bytes=0)
    for context in (64, 127, 256):
        ends = np.append(starts[1:], split.n_tokens)
        extra = [np.arange(s + context // 2, e, context // 2)
                 for s, e in zip(starts, ends, strict=True) if e - s > context]
        expected = np.concatenate([starts, *extra])
        expected = np.sort(expected[expected + context + 1 <= split.n_tokens])
        assert np.array_equal(window_starts(split, context), expected)


def test_scale_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run_cli("benchmarks/prepare_scale.py", "--source",
                     str(ROOT / "tests" / "fixtures" / "stories" / "train.txt"),
                     "--size_mb", "0.5", "--serial_mb", "0.2", "--vocab_size", "400",
                     "--workdir", str(tmp_path / "work"), "--output", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["corpus"]["bytes"] >= 500_000
    assert report["cold"]["mb_per_s"] > 0 and report["cached"]["seconds"] > 0
    assert report["cold"]["peak_rss_mb"]["total"] > 0
    assert not (tmp_path / "work").exists()  # the synthetic corpus is deleted
    steps = run_cli("benchmarks/prepare_scale.py", "--steps_only", "--source",
                    str(ROOT / "tests" / "fixtures" / "stories" / "train.txt"),
                    "--output", str(out))
    assert steps.returncode == 0, steps.stderr
    report = json.loads(out.read_text())
    assert report["cold"] and report["steps"]["ms_per_story"]["derive_labels"] > 0
    rendered = render_prepare(report)  # the block of docs/performance.md renders from it
    assert "| cold: from scratch |" in rendered and "`derive_labels`" in rendered
