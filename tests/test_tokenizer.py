"""Byte-level BPE: control tokens, round trips and the streaming decoder."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from saga_model.data import read_stories
from saga_model.errors import SagaError
from saga_model.labels import CONTROL_TOKENS
from saga_model.tokenizer import StoryTokenizer, train_tokenizer

TRICKY = [
    "Zoë and Chloé ate crème brûlée at the café.",
    "The dragon 🐉 smiled 😊 and the 👨‍👩‍👧 family waved!",
    "日本のねこ said «bonjour» — naïve but nice…",
    "Line one.\n\nLine two with  two spaces.",
]


@pytest.fixture(scope="module")
def tokenizer(corpus_dir: Path) -> StoryTokenizer:
    return train_tokenizer(read_stories(corpus_dir), vocab_size=1000)


def test_control_tokens_come_first(tokenizer: StoryTokenizer) -> None:
    assert [tokenizer.encode(t) for t in CONTROL_TOKENS] == [[i] for i in range(6)]
    assert tokenizer.eos_id == 0
    assert 300 < tokenizer.vocab_size <= 1000


def test_control_prefix_tokenizes_to_markers_and_words(tokenizer: StoryTokenizer) -> None:
    ids = tokenizer.encode("<|theme|> adventure<|story|>Once")
    assert ids[0] == CONTROL_TOKENS.index("<|theme|>")
    assert CONTROL_TOKENS.index("<|story|>") in ids
    assert tokenizer.decode(ids) == " adventureOnce"  # control tokens decode to nothing


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_of_accents_emoji_and_other_scripts(tokenizer: StoryTokenizer,
                                                       text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TRICKY)
def test_stream_decoder_never_emits_broken_characters(tokenizer: StoryTokenizer,
                                                      text: str) -> None:
    decoder = tokenizer.stream_decoder()
    pieces = [decoder.add(i) for i in tokenizer.encode(text)] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    # Emoji are several byte-level tokens: some steps must have held text back.
    if "🐉" in text:
        assert "" in pieces[:-1]


def test_stream_decoder_drops_an_unfinished_character_at_the_end(
        tokenizer: StoryTokenizer) -> None:
    ids = tokenizer.encode("A🐉")
    decoder = tokenizer.stream_decoder()
    partial = "".join(decoder.add(i) for i in ids[:-1])
    assert partial == "A"
    assert decoder.flush() == ""  # never U+FFFD
    assert decoder.add(tokenizer.encode("B")[0]) == "B"


def test_utf8_transitions_accept_exactly_the_valid_byte_streams(
        tokenizer: StoryTokenizer) -> None:
    # Random token sequences: the table's verdict at every step equals a strict UTF-8 decoder's.
    table = tokenizer.utf8_transitions()
    rng = random.Random(0)
    for _ in range(300):
        state, check = 0, codecs.getincrementaldecoder("utf-8")("strict")
        for _ in range(6):
            token = rng.randrange(tokenizer.n_control, tokenizer.vocab_size)
            try:
                check.decode(tokenizer.token_bytes(token))
                valid = True
            except UnicodeDecodeError:
                valid = False
            state = table[state][token]
            assert (state >= 0) == valid
            if not valid:
                break
        else:
            assert (state == 0) == (check.getstate()[0] == b"")
    assert all(table[state][tokenizer.eos_id] == -1 for state in range(1, len(table)))


def test_save_and_load_keep_the_same_tokenizer(tokenizer: StoryTokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = StoryTokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.fingerprint() == tokenizer.fingerprint()
    assert loaded.encode(TRICKY[1]) == tokenizer.encode(TRICKY[1])


def test_missing_or_corrupt_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SagaError, match="tokenizer not found"):
        StoryTokenizer.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SagaError, match="cannot read tokenizer"):
        StoryTokenizer.load(tmp_path / "bad.json")
