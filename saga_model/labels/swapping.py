"""Swapping character names for diversity during training."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache

from .lexicons import ANIMALS
from .names import KNOWN_FEMALE, KNOWN_MALE, KNOWN_PET_NAMES, NAME_POOL, PET_NAMES, POOL_GENDER

#: Alternation of the animal words of the "animal fable" lexicon ("dog*" -> dog\w*).
_ANIMAL_WORDS_RE = re.compile(
    "|".join(
        re.escape(animal.rstrip("*")) + (r"\w*" if animal.endswith("*") else "")
        for animal in ANIMALS
        if animal != "animal*"
    ),
    re.IGNORECASE,
)
_FEMALE_RE = re.compile(r"\b(?:she|her|hers|herself|girl|sister|daughter|mother|queen|princess"
                        r"|lady|woman|mommy|mom)\b", re.IGNORECASE)
_MALE_RE = re.compile(r"\b(?:he|him|his|himself|boy|brother|son|father|king|prince|man"
                      r"|daddy|dad)\b", re.IGNORECASE)
_SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]*")


def _name_regex(name: str) -> str:
    return rf"(?<![\w-]){re.escape(name)}(?![\w-])"


@lru_cache(maxsize=8192)
def _regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile`` with a cache larger than the ``re`` module's (one pattern per name)."""
    return re.compile(pattern, flags)


def _grouped_alternation(keywords: Sequence[str]) -> str:
    """Regex alternation of lexicon keywords ("dog*" -> dog\\w*) grouped by first letter, which
    the ``re`` engine tries much faster than a flat alternation."""
    groups: dict[str, list[str]] = {}
    for keyword in keywords:
        stem = keyword.rstrip("*")
        rest = re.escape(stem[1:]) + (r"\w*" if keyword.endswith("*") else "")
        groups.setdefault(stem[0], []).append(rest)
    return "|".join(f"{re.escape(first)}(?:{'|'.join(rests)})" for first, rests in groups.items())


_ANIMAL_WORD_SOURCE = rf"\b(?:{_grouped_alternation([a for a in ANIMALS if a != 'animal*'])})\b"
#: A whole animal word in lower-cased ASCII text (the same words as :data:`_ANIMAL_WORDS_RE`);
#: :func:`_animal_evidence` continues its patterns where one ends.
_ANIMAL_WORD_RE = re.compile(_ANIMAL_WORD_SOURCE)
#: The same in text of any case and script.
_ANIMAL_WORD_ANY_CASE_RE = re.compile(_ANIMAL_WORD_SOURCE, re.IGNORECASE)
#: What follows a name introduced as an animal: "Spot, the little dog", "Spot was a puppy".
_IS_ANIMAL_RE = re.compile(
    rf"\s*,?\s+(?:was\s+)?(?:the|a|an)\s+(?:\w+\s+){{0,2}}?(?:{_ANIMAL_WORDS_RE.pattern})\b",
    re.IGNORECASE,
)
#: "a girl named", "a boy called" (a name follows).
_PERSON_NAMED_RE = re.compile(r"\b(girl|boy|man|woman|lady)\s+(?:named|called)")


class _StoryFacts:
    """What :func:`_infer_kind` reads from a story, computed once per story and only if asked."""

    def __init__(self, story: str) -> None:
        self.story = story
        self._animal_ends: list[int] | None = None
        self._sentences: list[tuple[str, int, int]] | None = None

    @property
    def animal_ends(self) -> list[int]:
        """Where each animal word of the story ends."""
        if self._animal_ends is None:
            story = self.story
            matches = (_ANIMAL_WORD_RE.finditer(story.lower()) if story.isascii()
                       else _ANIMAL_WORD_ANY_CASE_RE.finditer(story))
            self._animal_ends = [m.end() for m in matches]
        return self._animal_ends

    @property
    def sentences(self) -> list[tuple[str, int, int]]:
        """Each sentence with its numbers of female and male words."""
        if self._sentences is None:
            self._sentences = [
                (text, len(_FEMALE_RE.findall(text)), len(_MALE_RE.findall(text)))
                for text in (m.group(0) for m in _SENTENCE_RE.finditer(self.story))
            ]
        return self._sentences


def _animal_evidence(story: str, name: str, facts: _StoryFacts | None = None) -> int:
    """2 if ``name`` is introduced as an animal ("a dog named Spot", "Spot the dog", "Spot was
    a puppy"), 1 for a weaker hint ("his dog, Spot"), else 0."""
    facts = facts or _StoryFacts(story)
    escaped = re.escape(name)
    named = _regex(rf"\s*,?\s+(?:who\s+was\s+|that\s+was\s+)?(?:named|called)\s+{escaped}\b",
                   re.IGNORECASE)
    if any(named.match(story, end) for end in facts.animal_ends):
        return 2
    for match in _regex(rf"\b(?=({escaped}))", re.IGNORECASE).finditer(story):
        if _IS_ANIMAL_RE.match(story, match.end(1)):
            return 2
    beside = _regex(rf"[ \t]*,?[ \t]+{escaped}\b", re.IGNORECASE)
    if any(beside.match(story, end) for end in facts.animal_ends):
        return 1
    return 0


def _infer_kind(story: str, name: str, facts: _StoryFacts | None = None) -> str:
    """"female", "male", "neutral" or "animal" for a character name in ``story``."""
    facts = facts or _StoryFacts(story)
    evidence = _animal_evidence(story, name, facts)
    if evidence == 2:
        return "animal"
    if name in KNOWN_FEMALE:
        return "female"
    if name in KNOWN_MALE:
        return "male"
    if name in KNOWN_PET_NAMES or name in PET_NAMES:
        return "animal"
    if name in POOL_GENDER:
        return POOL_GENDER[name]
    if evidence:
        return "animal"
    # "a girl named X", "a boy called X"
    named = _regex(rf"\s+{re.escape(name)}\b")
    for intro in _PERSON_NAMED_RE.finditer(story):
        if named.match(story, intro.end()):
            return "female" if intro.group(1) in ("girl", "woman", "lady") else "male"
    # Pronouns in the sentences that mention the name and in the sentence after each.
    sentences = facts.sentences
    name_re = _regex(_name_regex(name))
    female = male = 0
    for index, (sentence, n_female, n_male) in enumerate(sentences):
        if name_re.search(sentence):
            female += n_female
            male += n_male
            if index + 1 < len(sentences):
                female += sentences[index + 1][1]
                male += sentences[index + 1][2]
    if female >= 2 * male + 1:
        return "female"
    if male >= 2 * female + 1:
        return "male"
    return "neutral"


_ASCII_WORD_RE = re.compile(r"[A-Za-z]+")
#: Each name group of :func:`swap_names` ("animal" = :data:`PET_NAMES`) with its names in
#: lower case.
_LOWERED_POOLS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    group: (names, frozenset(name.lower() for name in names))
    for group, names in {**NAME_POOL, "animal": PET_NAMES}.items()
}


def swap_names(
    story: str, characters: Sequence[str], rng: random.Random
) -> tuple[str, tuple[str, ...]]:
    """Replace every character name in ``story`` by a distinct new name.

    Each name is replaced consistently, on whole words only ("Tom" and "Tom's" change, but
    "Tomato" and "Tommy" do not), by a name drawn with ``rng`` from :data:`NAME_POOL`,
    matching the character's gender when it can be inferred (a list of common TinyStories
    names, "a girl named ...", or the pronouns around the name), else from the neutral list.
    Animal characters ("a dog named Spot", "Spot the dog", well-known pet names like Fluffy
    or Whiskers) get a pet-like name from :data:`PET_NAMES` instead.  New names never equal
    another character's name nor any word already in the story.  Returns ``(new_story,
    new_characters)``, the latter in the same order as ``characters``.  Deterministic given
    the state of ``rng``.
    """
    unique: list[str] = []
    for name in characters:
        if name and name not in unique:
            unique.append(name)
    if not unique:
        return story, tuple(characters)
    taken = {word.lower() for word in _ASCII_WORD_RE.findall(story)}
    taken |= {name.lower() for name in unique}
    facts = _StoryFacts(story)
    mapping: dict[str, str] = {}
    for name in unique:
        kind = _infer_kind(story, name, facts)
        order = {
            "female": ("female", "neutral"),
            "male": ("male", "neutral"),
            "neutral": ("neutral", "female", "male"),
            "animal": ("animal", "neutral"),
        }[kind]
        for group in order:
            names, lowered = _LOWERED_POOLS[group]
            clash = taken & lowered
            candidates = [n for n in names if n.lower() not in clash] if clash else names
            if candidates:
                new = rng.choice(candidates)
                break
        else:  # pragma: no cover - the pools are far larger than any story's cast
            raise ValueError("name pool exhausted")
        mapping[name] = new
        taken.add(new.lower())
    pattern = _regex("|".join(_name_regex(n) for n in sorted(mapping, key=len, reverse=True)))
    new_story = pattern.sub(lambda m: mapping[m.group(0)], story)
    return new_story, tuple(mapping.get(name, name) for name in characters)
