"""Byte-level BPE: control tokens, round trips and the streaming decoder."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest
from conftest import ROOT, one_line_story, peak_rss_mb

from saga_model.data import read_stories
from saga_model.errors import SagaError
from saga_model.labels import CONTROL_TOKENS
from saga_model.tokenizer import PIECE_CHARS, StoryTokenizer, text_pieces, train_tokenizer

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


def test_text_pieces_cut_only_where_the_tokens_stay_the_same(tokenizer: StoryTokenizer) -> None:
    rng = random.Random(3)
    words = ["Lily", "ran", "to", "the", "park.", "It's", "fun!", '"Hi,"', "42", "Zoë", "…",
             "<|endoftext|>", "<|story|>", "日本"]
    spaces = [" ", " ", " ", "  ", "\n", "\n\n", " \n ", "   \n"]
    text = "".join(rng.choice(words) + rng.choice(spaces) for _ in range(3000))
    for limit in (20, 57, 300):
        pieces = list(text_pieces(text, limit))
        assert "".join(pieces) == text and len(pieces) > len(text) // limit
        assert max(map(len, pieces)) <= limit
        assert [i for p in pieces for i in tokenizer.encode(p)] == tokenizer.encode(text)


def test_a_word_longer_than_a_piece_is_cut_but_never_inside_a_control_token() -> None:
    text = "x" * 30 + "<|endoftext|>" + "y" * 30
    for limit in range(15, 45):
        pieces = list(text_pieces(text, limit))
        assert "".join(pieces) == text and max(map(len, pieces)) <= limit
        assert any("<|endoftext|>" in p for p in pieces), limit
    assert list(text_pieces("a" * 100, 40)) == ["a" * 40, "a" * 40, "a" * 20]


def test_a_long_one_line_text_is_encoded_in_bounded_memory(tmp_path: Path) -> None:
    # Given whole, the HF tokenizer keeps ~600 bytes per token: 680 MB for these 4 MB.
    story = tmp_path / "story.txt"
    story.write_text(one_line_story(4_000_000))
    assert PIECE_CHARS < 100_000
    script = ("import sys; from pathlib import Path; from saga_model.tokenizer import "
              "StoryTokenizer; t = StoryTokenizer.load(sys.argv[1]); "
              "ids = t.encode(Path(sys.argv[2]).read_text()); "
              "print(len(ids), t.encode_flat([Path(sys.argv[2]).read_text()])[0].size, "
              "file=sys.stderr)")
    peak, err = peak_rss_mb("-c", script, str(ROOT / "saga_model/pretrained/tokenizer.json"),
                            str(story))
    counts = err.split()
    assert len(counts) == 2 and counts[0] == counts[1] and int(counts[0]) > 900_000, err
    assert peak < 250, f"peak RSS {peak:.0f} MB"
