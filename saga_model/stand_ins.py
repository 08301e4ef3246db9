"""Stand-in names: how the model tells stories about names it cannot spell.

The model learns names as interchangeable slots: training renames the characters of most
stories with names from :data:`~saga_model.labels.NAME_POOL`, in the control prefix and the story
alike, and it writes the names its tokenizer holds as one token (" Zara", " Milo", " Tim")
readily. Other names are spelled in pieces: "Zoë" is " Z" "o" "\\xc3" "\\xab", pieces of a
character the model has hardly seen in a name, so it garbles the name or drops it.

So each requested name the tokenizer cannot write as one token is given to the model as a
stand-in (a one-token name, the same one for the same name), and the stand-in is put back as
the requested name: :meth:`NameStandIns.to_model` before the model reads an opening,
:class:`NameRestorer` on the text it writes. Training's renaming, run backwards.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from .labels.names import ALL_KNOWN_NAMES, KNOWN_FEMALE, KNOWN_MALE, NAME_POOL, POOL_GENDER
from .tokenizer import StoryTokenizer

#: Letters that Unicode does not decompose into an ASCII letter and a mark.
_ASCII_LETTERS = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D",
                                "ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe",
                                "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i"})
_WORD_RE = re.compile(r"[\w'’-]+")
#: The end of a text that may still grow into a longer word.
_WORD_TAIL_RE = re.compile(r"[\w'’-]*\Z")


def ascii_name(name: str) -> str:
    """``name`` without accents ("Zoë" -> "Zoe", "Łucja" -> "Lucja"); other letters are kept."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_ASCII_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _whole_words(names: Sequence[str]) -> re.Pattern[str]:
    """Any of ``names`` as a whole word (longest first), as :func:`~saga_model.labels.mentions`
    counts them."""
    options = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{options})(?![\w-])")


class NameStandIns:
    """The stand-in of each requested name the model does not know (see the module's text)."""

    def __init__(self, stand_ins: dict[str, str]) -> None:
        self.stand_ins = stand_ins
        self._names = {stand_in: name for name, stand_in in stand_ins.items()}

    @classmethod
    def choose(cls, tokenizer: StoryTokenizer, names: Sequence[str],
               opening: str = "") -> NameStandIns:
        """Stand-ins for those of ``names`` that ``tokenizer`` does not write as one token.

        Measured on the shipped model, names it writes as one token (" Zara", " Milo", " Tim")
        appear in nearly every story asked for them; others, even plain ones ("Jose", "Soren",
        "Elodie"), rarely do, and the name boost then makes the model stammer their first pieces
        ("Jad Jad Jad"). A stand-in is the name without accents when that is a known one-token
        name ("Siobhán" -> "Siobhan"), else a one-token pool name, of the same gender when the
        accent-free name is known for one ("Zoë": a girl's name), picked by a hash of the
        name. It is never another requested name nor a word of ``opening``.
        """
        taken = {word.casefold() for text in (opening, *names) for word in _WORD_RE.findall(text)}
        stand_ins: dict[str, str] = {}
        for name in names:
            if _one_token(tokenizer, name):
                continue
            plain = ascii_name(name).split()[0]  # the first name tells the gender
            if _one_token(tokenizer, plain) and plain in ALL_KNOWN_NAMES \
                    and plain.casefold() not in taken:
                stand_in = plain
            else:
                stand_in = _pool_name(tokenizer, plain, name, taken)
            if stand_in is not None:
                stand_ins[name] = stand_in
                taken.add(stand_in.casefold())
        return cls(stand_ins)

    def for_model(self, names: Sequence[str]) -> tuple[str, ...]:
        """``names`` as the model is given them."""
        return tuple(self.stand_ins.get(name, name) for name in names)

    def to_model(self, text: str) -> str:
        """``text`` with the requested names replaced by their stand-ins."""
        if not self.stand_ins or not text:
            return text
        return _whole_words(list(self.stand_ins)).sub(lambda m: self.stand_ins[m.group(0)], text)

    def restorer(self, before: str = "") -> NameRestorer:
        """A :class:`NameRestorer` for text that follows ``before``."""
        return NameRestorer(self._names, before)


class NameRestorer:
    """Puts the requested names back into streamed text in place of their stand-ins.

    Text comes out as soon as it cannot be part of a stand-in any more: a word is held back until
    the character after it arrives. Without stand-ins, text passes straight through.
    """

    def __init__(self, names: dict[str, str], before: str = "") -> None:
        self._names = names
        self._pattern = _whole_words(list(names)) if names else None
        self._pending = ""
        self._before = before[-1:]

    def add(self, text: str) -> str:
        """The text that is final once ``text`` is added (maybe "")."""
        if self._pattern is None:
            return text
        self._pending += text
        return self._release(_WORD_TAIL_RE.search(self._pending).start())  # type: ignore[union-attr]

    def flush(self) -> str:
        """The rest of the text, at its end."""
        return self._release(len(self._pending))

    def _release(self, end: int) -> str:
        ready, self._pending = self._pending[:end], self._pending[end:]
        if not ready or self._pattern is None:
            return ready
        # Matching starts after the character before, which gives the whole-word test its edge.
        text, start, parts = self._before + ready, len(self._before), []
        for match in self._pattern.finditer(text, start):
            parts += [text[start:match.start()], self._names[match.group(0)]]
            start = match.end()
        parts.append(text[start:])
        self._before = ready[-1]
        return "".join(parts)


def _one_token(tokenizer: StoryTokenizer, name: str) -> bool:
    """Whether ``tokenizer`` writes ``name`` after a space as one token (a name it saw often)."""
    return len(tokenizer.encode(" " + name)) == 1


def _pool_name(tokenizer: StoryTokenizer, plain: str, name: str, taken: set[str]) -> str | None:
    """A one-token pool name not in ``taken``, of the gender ``plain`` is known for (if any)."""
    gender = ("female" if plain in KNOWN_FEMALE else "male" if plain in KNOWN_MALE
              else POOL_GENDER.get(plain))
    groups = (gender,) if gender in ("female", "male") else ("female", "male")
    candidates = [n for group in groups for n in NAME_POOL[group]
                  if n.casefold() not in taken and _one_token(tokenizer, n)
                  and len(tokenizer.encode(n)) == 1]
    if not candidates:  # a tokenizer that holds no pool name whole: no better stand-in
        return None
    digest = hashlib.sha256(name.encode()).digest()
    return candidates[int.from_bytes(digest[:4], "big") % len(candidates)]
