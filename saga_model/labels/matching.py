"""Keyword matching compiled from the lexicons: weighted keyword counts of a story."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from ..prefix import FIELD_VALUES
from .lexicons import INTRO_BONUS, INTRO_WORDS, LEXICONS

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")

_Hits = tuple[tuple[str, float], ...]
#: Per field: the phrases that may start at a token, longest first.
_Phrases = tuple[tuple[tuple[str, ...], bool, _Hits], ...]


class _FieldMatcher:
    """Keyword matcher for one field, built once at import.

    Single words are looked up in a dict (wildcards by their longest matching stem, a
    possessive "'s" is ignored); phrases are matched token by token and win over single
    words at the same position, like a leftmost-longest regex alternation.
    """

    def __init__(self, lexicon: Mapping[str, Mapping[str, float]]) -> None:
        by_keyword: dict[str, list[tuple[str, float]]] = {}
        for value, keywords in lexicon.items():
            for keyword, weight in keywords.items():
                by_keyword.setdefault(keyword, []).append((value, float(weight)))
        self.words: dict[str, _Hits] = {}
        self.stems: dict[str, _Hits] = {}
        self.exclamation: _Hits = ()
        phrases: dict[str, list[tuple[tuple[str, ...], bool, _Hits]]] = {}
        for keyword, hits in by_keyword.items():
            if keyword == "!":
                self.exclamation = tuple(hits)
                continue
            wildcard = keyword.endswith("*")
            parts = tuple(keyword.rstrip("*").lower().split())
            if len(parts) == 1:
                (self.stems if wildcard else self.words)[parts[0]] = tuple(hits)
            else:
                phrases.setdefault(parts[0], []).append((parts, wildcard, tuple(hits)))
        self.phrases: dict[str, _Phrases] = {
            first: tuple(sorted(options, key=lambda option: -len(option[0])))
            for first, options in phrases.items()
        }

    def word_hits(self, word: str) -> _Hits:
        """Lexicon hits of one token (exact word, else longest wildcard stem)."""
        hits = self.words.get(word, ())
        if not hits:
            for end in range(len(word), 0, -1):
                stem_hits = self.stems.get(word[:end])
                if stem_hits:
                    hits = stem_hits
                    break
        if not hits and word.endswith("'s"):
            hits = self.word_hits(word[:-2])
        return hits


_MATCHERS: dict[str, _FieldMatcher] = {
    field: _FieldMatcher(lexicon) for field, lexicon in LEXICONS.items()
}
_FIELD_ORDER: tuple[str, ...] = tuple(_MATCHERS)
#: What one field knows of a token: its single-word hits, the phrases starting with it, and
#: the possible second words of those phrases (None if one may end with any word there).
_FieldEntry = tuple[_Hits, _Phrases, frozenset[str] | None]
#: Token -> its :data:`_FieldEntry` for each field of :data:`_FIELD_ORDER`; an empty tuple for
#: the many tokens no field cares about.  Filled lazily, bounded.
_TOKEN_TABLE: dict[str, tuple[_FieldEntry, ...]] = {}
_TOKEN_TABLE_LIMIT = 500_000


def _field_entry(matcher: _FieldMatcher, word: str) -> _FieldEntry:
    phrases = matcher.phrases.get(word, ())
    open_ended = any(wildcard and len(parts) == 2 for parts, wildcard, _ in phrases)
    seconds = None if open_ended else frozenset(parts[1] for parts, _, _ in phrases)
    return matcher.word_hits(word), phrases, seconds


def _token_entries(words: list[str]) -> list[tuple[_FieldEntry, ...]]:
    """The :data:`_TOKEN_TABLE` entry of each word (computing those not in it yet)."""
    entries = list(map(_TOKEN_TABLE.get, words))
    if None in entries:
        if len(_TOKEN_TABLE) >= _TOKEN_TABLE_LIMIT:  # bound memory on unusual input
            _TOKEN_TABLE.clear()
        for word in words:
            if word not in _TOKEN_TABLE:
                entry = tuple(_field_entry(m, word) for m in _MATCHERS.values())
                _TOKEN_TABLE[word] = entry if any(h or p for h, p, _ in entry) else ()
        entries = list(map(_TOKEN_TABLE.__getitem__, words))
    return entries


class _Tokens:
    """The lexicon tokens of one lower-cased story (the text between them is found only if a
    phrase needs it)."""

    __slots__ = ("_gaps", "text", "words")

    def __init__(self, text: str) -> None:
        self.text = text
        self.words: list[str] = _TOKEN_RE.findall(text)
        self._gaps: list[str] | None = None

    def phrase_at(self, i: int, phrases: _Phrases) -> tuple[int, _Hits]:
        """(number of tokens, hits) of the longest of ``phrases`` starting at token ``i``."""
        words = self.words
        for parts, wildcard, hits in phrases:
            n = len(parts)
            if i + n > len(words):
                continue
            for k in range(1, n):
                word = words[i + k]
                if not (word.startswith(parts[k]) if wildcard and k == n - 1
                        else word == parts[k]) or not self._space_before(i + k):
                    break
            else:
                return n, hits
        return 0, ()

    def _space_before(self, j: int) -> bool:
        """The text between tokens ``j - 1`` and ``j`` is whitespace only (and not empty)."""
        if self._gaps is None:
            self._gaps = _TOKEN_RE.split(self.text)  # the text before each token, and the rest
        return self._gaps[j].isspace()


def keyword_scores(story: str, fields: Sequence[str]) -> tuple[dict[str, dict[str, float]], int]:
    """Weighted keyword counts of each of ``fields`` (one pass over the tokens) and the number
    of words of ``story``.  Only ``genre`` gives the first :data:`INTRO_WORDS` tokens the
    :data:`INTRO_BONUS`."""
    lowered = story.lower()
    tokens = _Tokens(lowered.replace("’", "'"))
    n_words = len(_TOKEN_RE.findall(lowered)) if "’" in lowered else len(tokens.words)
    slots = [_FIELD_ORDER.index(field) for field in fields]
    scores = [dict.fromkeys(FIELD_VALUES[field], 0.0) for field in fields]
    intro = [INTRO_WORDS if field == "genre" else 0 for field in fields]
    resume = [0] * len(fields)  # tokens before this were part of a matched phrase
    words = tokens.words
    entries = _token_entries(words)
    last = len(words) - 1
    for i in itertools.compress(range(len(entries)), entries):  # tokens some field cares about
        entry = entries[i]
        for k, slot in enumerate(slots):
            if i < resume[k]:
                continue
            hits, phrases, seconds = entry[slot]
            if phrases and (seconds is None or (i < last and words[i + 1] in seconds)):
                length, phrase_hits = tokens.phrase_at(i, phrases)
                if length:
                    hits = phrase_hits
                    resume[k] = i + length
            if hits:
                factor = INTRO_BONUS if i < intro[k] else 1.0
                field_scores = scores[k]
                for value, weight in hits:
                    field_scores[value] += weight * factor
    count = story.count("!")
    for k, field in enumerate(fields):
        for value, weight in _MATCHERS[field].exclamation:
            scores[k][value] += weight * count
    return dict(zip(fields, scores, strict=True)), n_words

