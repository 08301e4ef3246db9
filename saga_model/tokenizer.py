"""Byte-level BPE tokenizer (HF ``tokenizers``) with control tokens and a streaming decoder."""

from __future__ import annotations

import codecs
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .atomic import atomic_write_text
from .errors import SagaError
from .prefix import CONTROL_TOKENS, END_OF_STORY, STORY_START

#: The longest text (in characters) handed to the HF tokenizer at once: it keeps several
#: hundred bytes per token of a text it encodes (a 4 MB one-line story took 680 MB), so longer
#: texts are encoded in pieces (:func:`text_pieces`).
PIECE_CHARS = 1 << 16
#: Pieces are encoded together (in parallel) up to about this many characters at a time.
GROUP_CHARS = 1 << 18
_LONGEST_CONTROL = max(map(len, CONTROL_TOKENS))


def text_pieces(text: str, limit: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in consecutive pieces of at most ``limit`` characters, whose tokens one after
    the other are the tokens of ``text``.

    A piece ends just before a space or line break that precedes a non-space character: the
    byte-level pre-tokenizer starts a new word there in any case, so cutting there changes no
    token.  Only a stretch of ``limit`` characters with no such place (one giant "word") is
    cut at the limit (the tokens there may differ), never inside a control token such as
    ``<|endoftext|>``.
    """
    if limit < _LONGEST_CONTROL + 1:
        raise ValueError(f"limit must be over {_LONGEST_CONTROL} characters")
    start = 0
    while len(text) - start > limit:
        end = cut = start + limit
        while True:
            cut = max(text.rfind(" ", start + 1, cut), text.rfind("\n", start + 1, cut))
            if cut < 0:
                cut = end
                control = text.rfind("<|", end - _LONGEST_CONTROL + 1, end + 1)
                closing = text.find("|>", control, control + _LONGEST_CONTROL)
                if control > start and closing + 2 > end:
                    cut = control
                break
            if not text[cut + 1].isspace():  # a space also to Rust's regex (a subset of Python's)
                break
        yield text[start:cut]
        start = cut
    yield text[start:]


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-printable-character table used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


#: States of a UTF-8 byte stream: 0 between characters; 1-3 that many continuation bytes due;
#: 4-7 after the lead bytes E0, ED, F0, F4, whose next byte has a narrower range.
UTF8_STATES = 8
#: Per state: (lowest, highest) allowed next byte and the state after it.
_CONTINUATION = {1: (0x80, 0xBF, 0), 2: (0x80, 0xBF, 1), 3: (0x80, 0xBF, 2), 4: (0xA0, 0xBF, 1),
                 5: (0x80, 0x9F, 1), 6: (0x90, 0xBF, 2), 7: (0x80, 0x8F, 2)}


def _utf8_after(state: int, data: bytes) -> int:
    """The UTF-8 state after ``data`` starting in ``state``, or -1 if ``data`` is invalid there."""
    if state == 0 and data.isascii():
        return 0
    for byte in data:
        if state:
            low, high, after = _CONTINUATION[state]
            if not low <= byte <= high:
                return -1
            state = after
        elif byte < 0x80:
            continue
        elif 0xC2 <= byte <= 0xDF:
            state = 1
        elif 0xE0 <= byte <= 0xEF:
            state = {0xE0: 4, 0xED: 5}.get(byte, 2)
        elif 0xF0 <= byte <= 0xF4:
            state = {0xF0: 6, 0xF4: 7}.get(byte, 3)
        else:  # a continuation byte with nothing to continue, or a byte UTF-8 never uses
            return -1
    return state


class StoryTokenizer:
    """A trained byte-level BPE whose first ids are the control tokens (end of story = 0)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in CONTROL_TOKENS]
        if ids != list(range(len(CONTROL_TOKENS))):
            raise SagaError("tokenizer does not have Grain de Saga's control tokens")
        self.eos_id = tokenizer.token_to_id(END_OF_STORY)
        self.story_id = tokenizer.token_to_id(STORY_START)
        self.n_control = len(CONTROL_TOKENS)
        table = _unicode_to_byte()
        self._token_bytes: list[bytes] = [
            b"" if i < self.n_control else bytes(table[c] for c in tokenizer.id_to_token(i))
            for i in range(tokenizer.get_vocab_size())
        ]
        self._utf8_table: list[list[int]] | None = None

    @property
    def vocab_size(self) -> int:
        """Number of token ids, control tokens included."""
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; control tokens written in the text become their ids."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads), long ones in pieces."""
        encoded: list[list[int]] = [[] for _ in texts]
        for owners, ids in self._encoded_pieces(texts):
            for owner, piece_ids in zip(owners, ids, strict=True):
                encoded[owner] += piece_ids
        return encoded

    def encode_flat(self, texts: Iterable[str], dtype: type[np.integer] = np.uint32
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(the token ids of all ``texts`` one after the other, the number of tokens of each
        text as int64): :meth:`encode_batch` without a Python object per token, so a text
        of millions of tokens takes a few bytes per token."""
        texts = list(texts)
        lengths = np.zeros(len(texts), dtype=np.int64)
        tokens = [np.empty(0, dtype=dtype)]
        for owners, ids in self._encoded_pieces(texts):
            counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            np.add.at(lengths, owners, counts)
            tokens.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype,
                                      count=int(counts.sum())))
        return np.concatenate(tokens), lengths

    def _encoded_pieces(self, texts: Sequence[str]) -> Iterator[tuple[list[int], list[list[int]]]]:
        """(index of each piece's text, token ids of each piece) for the :func:`text_pieces` of
        ``texts``, in order, a group of about :data:`GROUP_CHARS` characters at a time."""
        owners: list[int] = []
        pieces: list[str] = []
        chars = 0
        for owner, text in enumerate(texts):
            for piece in text_pieces(text):
                owners.append(owner)
                pieces.append(piece)
                chars += len(piece)
                if chars >= GROUP_CHARS:
                    yield owners, self._encode_group(pieces)
                    owners, pieces, chars = [], [], 0
        if pieces:
            yield owners, self._encode_group(pieces)

    def _encode_group(self, pieces: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(pieces, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` with control tokens left out; invalid UTF-8 becomes U+FFFD."""
        return b"".join(self._token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (empty for control tokens)."""
        return self._token_bytes[token_id]

    def utf8_transitions(self) -> list[list[int]]:
        """``table[state][token]``: the UTF-8 state after ``token`` (see :data:`UTF8_STATES`),
        or -1 when its bytes cannot follow there (the end of story only follows whole text)."""
        if self._utf8_table is None:
            self._utf8_table = [
                [_utf8_after(state, data) for data in self._token_bytes]
                for state in range(UTF8_STATES)
            ]
            for state in range(1, UTF8_STATES):
                self._utf8_table[state][self.eos_id] = -1
        return self._utf8_table

    def stream_decoder(self) -> StreamDecoder:
        """A decoder that turns token ids into text pieces without ever splitting a character."""
        return StreamDecoder(self)

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's full definition (used to key token caches)."""
        return hashlib.sha256(self._tok.to_str().encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` atomically."""
        atomic_write_text(path, self._tok.to_str())

    @classmethod
    def load(cls, path: str | Path) -> StoryTokenizer:
        """Read a ``tokenizer.json``; missing or corrupt files raise :class:`SagaError`."""
        path = Path(path)
        if not path.is_file():
            raise SagaError(f"tokenizer not found: {path}")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise SagaError(f"cannot read tokenizer {path}: {str(exc).splitlines()[0]}") from None
        return cls(tok)


class StreamDecoder:
    """Incremental detokenizer: feed ids one at a time, get text only once characters are whole."""

    def __init__(self, tokenizer: StoryTokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        """Text completed by this token (may be empty while a multi-byte character is pending)."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """End the text: an incomplete last character (a story cut off in the middle of one) is
        dropped, never shown as U+FFFD."""
        self._utf8.reset()
        return ""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000) -> StoryTokenizer:
    """Train a byte-level BPE on ``texts`` with the control tokens as the first ids (long texts
    are handed to the trainer in pieces, which count the same words)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(CONTROL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((piece for text in texts for piece in text_pieces(text)),
                            trainer=trainer)
    return StoryTokenizer(tok)
