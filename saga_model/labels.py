"""Deterministic story labels, control prefixes and character-name handling.

TinyStories has no labels, so Grain de Saga derives them from each story with small,
readable keyword lexicons:

* ``theme`` / ``tone`` / ``genre``: every value has a lexicon of keywords and phrases with
  weights.  A story's *raw* score for a value is the sum of the weights of the keyword
  occurrences; :func:`label_scores` turns that into a density (per 100 words) multiplied by a
  per-value calibration factor, so that ubiquitous words ("happy", "mom", "play") cannot swamp
  the rarer, more specific values.  :func:`derive_labels` picks the best value, or ``None``
  when nothing scores clearly.
* ``characters``: named characters, found by :func:`find_characters`.

The very same rules measure adherence of generated stories (:func:`mentions`).

The module also builds the control prefix placed before every story
(:func:`control_prefix`), validates user choices coming from the command line
(:func:`validate_choice`, :func:`parse_characters`) and swaps character names for
diversity during training (:func:`swap_names`, :data:`NAME_POOL`).

Everything here is pure standard library and deterministic.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache

__all__ = [
    "CONTROL_TOKENS",
    "END_OF_STORY",
    "GENRES",
    "LEXICONS",
    "NAME_POOL",
    "PET_NAMES",
    "STORY_START",
    "THEMES",
    "TONES",
    "StoryLabels",
    "control_prefix",
    "derive_labels",
    "drop_fields",
    "find_characters",
    "label_scores",
    "mentions",
    "parse_characters",
    "swap_names",
    "validate_choice",
]


def _words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of a multi-line string (used for word lists)."""
    return tuple(text.split())


# ---------------------------------------------------------------------------------------------
# Control tokens and label values
# ---------------------------------------------------------------------------------------------

END_OF_STORY = "<|endoftext|>"
STORY_START = "<|story|>"
CONTROL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|story|>",
    "<|theme|>",
    "<|tone|>",
    "<|genre|>",
    "<|characters|>",
)

#: Theme values; the order is also the tie-break order of :func:`derive_labels`.
THEMES: tuple[str, ...] = (
    "adventure",
    "friendship",
    "kindness",
    "courage",
    "sharing",
    "family",
    "nature",
    "magic",
    "honesty",
    "learning",
)
#: Tone values; the order is also the tie-break order.
TONES: tuple[str, ...] = ("cheerful", "calm", "sad", "funny", "exciting", "scary")
#: Genre values (lower case, multiword values use a space); the order is the tie-break order.
GENRES: tuple[str, ...] = ("fantasy", "animal fable", "everyday life", "mystery", "sci-fi")

_FIELD_VALUES: dict[str, tuple[str, ...]] = {"theme": THEMES, "tone": TONES, "genre": GENRES}

# ---------------------------------------------------------------------------------------------
# Lexicons (plain data)
# ---------------------------------------------------------------------------------------------
# Keyword syntax: lower-case words or phrases matched case-insensitively on whole words (a
# possessive "'s" is ignored); a trailing "*" matches any word ending ("giggl*" -> giggle,
# giggled, giggling); the words of a phrase must be separated by whitespace only.  The special
# keyword "!" counts exclamation marks.
# Weights: 0.3-0.7 weak/common evidence, 1 ordinary, 2 strong, 3 defining.

_ANIMALS = (
    "dog*", "doggy", "puppy", "puppies", "pup", "cat", "cats", "kitty", "kitten*", "bird*",
    "bunny", "bunnies", "rabbit*", "bear", "bears", "fox", "foxes", "mouse", "mice", "lion*",
    "frog*", "duck*", "owl*", "squirrel*", "elephant*", "monkey*", "fish", "fishes", "turtle*",
    "pig", "pigs", "piggy", "cow", "cows", "horse*", "pony", "sheep", "lamb*", "ant", "ants",
    "bee", "bees", "deer", "wolf", "wolves", "tiger*", "giraffe*", "zebra*", "penguin*",
    "crab*", "bug", "bugs", "snake*", "goat*", "hippo*", "panda*", "chick", "chicks",
    "chicken*", "hen", "rooster", "parrot*", "dolphin*", "whale*", "shark*", "worm*",
    "spider*", "caterpillar*", "ladybug*", "beaver*", "raccoon*", "hedgehog*", "otter*",
    "koala*", "kangaroo*", "crocodile*", "alligator*", "rhinoceros", "gorilla*", "donkey*",
    "mule", "seal", "seals", "animal*",
)

LEXICONS: dict[str, dict[str, dict[str, float]]] = {
    "theme": {
        "adventure": {
            "adventure*": 3, "explor*": 2, "journey*": 2, "treasure*": 2, "map": 1.5,
            "travel*": 1.5, "discover*": 1.5, "set off": 1.5, "island": 1.5, "cave*": 1.5,
            "sail*": 1.5, "pirate*": 2, "jungle": 1.5, "quest": 2, "voyage": 2, "trip": 1,
            "far away": 1, "mountain*": 1, "climb*": 0.7, "boat": 0.7, "ship": 1,
            "across the": 0.5, "new places": 2, "the unknown": 2,
        },
        "friendship": {
            "friendship": 3, "best friend*": 2, "new friend*": 2, "be friends": 2,
            "make friends": 2, "made friends": 2, "became friends": 2.5, "friend": 0.7,
            "friends": 0.7, "lonely": 1, "buddy": 0.7, "buddies": 1, "pal": 1, "pals": 1,
            "each other": 0.5, "together": 0.3, "play with me": 1, "no friends": 2,
        },
        "kindness": {
            "kindness": 3, "kind": 1.5, "kindly": 1.5, "be kind": 2, "helpful": 1.5,
            "help": 0.7, "helped": 0.7, "helping": 0.7, "nice": 0.5, "care of": 1,
            "take care": 1, "cared": 1, "caring": 1.5, "generous": 2, "thank you": 0.7,
            "feel better": 1.5, "felt better": 1.5, "hungry": 0.5, "hurt": 0.5, "poor": 0.7,
            "a good deed": 3, "good deed*": 3, "gave him": 0.7, "gave her": 0.7,
            "rude": 1.5, "mean": 1, "bully": 2,
        },
        "courage": {
            "brave": 2, "bravely": 2, "bravery": 3, "courage*": 3, "scared": 0.7,
            "afraid": 0.7, "fear": 1.5, "fears": 2, "frightened": 0.7, "nervous": 1,
            "be brave": 2, "don't be afraid": 2, "not afraid": 2, "not scared": 2,
            "deep breath": 2, "stood up": 1, "hero*": 2, "dare*": 1, "bold": 1.5,
            "strong": 0.7, "rescue*": 1.5, "save": 0.7, "saved": 0.7,
        },
        "sharing": {
            "share": 2, "shares": 2, "shared": 2, "sharing": 3, "take turns": 2.5,
            "took turns": 2.5, "taking turns": 2.5, "turns": 0.5, "selfish": 2, "mine": 1,
            "all to himself": 2, "all to herself": 2, "split": 1, "half": 1, "greedy": 2,
            "give some": 1, "gave some": 1, "everyone can": 1, "not fair": 1,
        },
        "family": {
            "family": 2, "families": 2, "mom": 0.6, "mommy": 0.6, "mum": 0.6, "mummy": 0.6,
            "mama": 0.6, "mother": 0.8, "dad": 0.6, "daddy": 0.6, "papa": 0.6, "father": 0.8,
            "parents": 1.5, "brother*": 1.5, "sister*": 1.5, "grandma": 1.5, "grandpa": 1.5,
            "granny": 1.5, "grandmother": 1.5, "grandfather": 1.5, "cousin*": 1.5,
            "aunt*": 1.5, "uncle*": 1.5, "baby": 0.7, "twins": 1.5, "son": 1, "daughter": 1,
            "hug": 0.3, "hugs": 0.3, "hugged": 0.3,
        },
        "nature": {
            "nature": 3, "tree": 0.7, "trees": 1, "flower*": 1, "garden*": 1, "forest": 1,
            "woods": 1, "grass": 1, "leaf": 1, "leaves": 1, "river*": 1, "pond": 1,
            "lake": 1, "ocean": 1, "sea": 1, "plant*": 1.5, "seed*": 2, "grow": 1,
            "grew": 1, "growing": 1, "bloom*": 2, "butterfl*": 1, "rain": 1, "rainbow*": 1,
            "snow*": 1, "wind": 1, "breeze": 1, "sky": 0.5, "sun": 0.5, "sunshine": 1,
            "weather": 1.5, "season*": 2, "spring": 1, "autumn": 2, "fall leaves": 2,
            "hill*": 0.7, "meadow*": 2, "field": 0.7, "water": 0.5, "soil": 2, "dirt": 1,
            "mud": 0.7, "stream": 1, "rock": 0.5, "rocks": 0.5, "stone*": 0.5, "bush*": 1,
            "insect*": 1.5, "nest": 1, "beach": 0.7, "sand": 0.7, "shell*": 0.7,
            "mushroom*": 1,
        },
        "magic": {
            "magic": 3, "magical": 3, "magically": 3, "wizard*": 3, "fairy": 3,
            "fairies": 3, "spell": 2, "spells": 2, "wand": 3, "wands": 3, "wish": 1.5,
            "wishes": 1.5,
            "wished": 1.5, "enchant*": 3, "witch*": 2.5, "potion*": 3, "unicorn*": 2,
            "genie": 3, "sparkl*": 1, "glow*": 1, "came alive": 2, "come alive": 2,
            "come to life": 2, "invisible": 2, "turned into": 1, "disappeared": 0.7,
            "poof": 2, "mermaid*": 1.5, "dragon*": 1,
        },
        "honesty": {
            "honest": 3, "honesty": 3, "honestly": 2, "truth": 2.5, "truthful": 3, "lie": 2,
            "lies": 2, "lied": 2.5, "liar": 3, "lying": 0.5, "sorry": 0.5, "confess*": 2.5,
            "admit*": 2, "blame*": 1.5, "sneak": 1, "sneaked": 1, "snuck": 1, "sneaky": 1,
            "stole": 2, "steal*": 2, "stolen": 2, "cheat*": 2, "fib": 2, "fibs": 2,
            "promise*": 0.5, "without asking": 2, "didn't ask": 1, "did not ask": 1,
            "not his": 1, "not hers": 1, "not yours": 1, "not theirs": 1, "guilty": 2,
            "ashamed": 1.5, "felt bad": 1, "feel bad": 1, "it was me": 2, "i did it": 1.5,
            "belongs to": 1, "give it back": 1.5, "gave it back": 1.5, "return it": 1.5,
            "returned": 0.7, "secretly": 1, "apologi*": 1, "fault": 1.5, "real story": 1,
        },
        "learning": {
            "school": 1.5, "teacher*": 2, "class": 1.5, "classroom": 2, "lesson*": 0.5,
            "learn": 1, "learning": 1.5, "learned how": 2, "learnt how": 2,
            "learn how": 2, "how to": 1, "teach*": 1.5, "taught": 1.5, "read": 1,
            "reading": 1.5, "book*": 0.7, "letters": 1.5, "alphabet": 3, "count": 1,
            "counted": 1, "counting": 1,
            "numbers": 2, "math": 3, "practi*": 2, "study": 2, "studied": 2, "smart": 1,
            "clever": 0.7, "question*": 1, "answer*": 0.7, "understand*": 1, "idea": 0.5,
            "try again": 1, "tried again": 1, "new words": 2, "write": 1, "wrote": 1,
            "draw": 0.5, "science": 1.5,
        },
    },
    "tone": {
        "cheerful": {
            "happy": 0.4, "happily": 0.5, "smile*": 1, "fun": 1, "joy*": 2, "cheer*": 2,
            "glad": 1, "yay": 2, "hooray": 2, "love": 0.4, "loved": 0.4, "sing": 1, "sings": 1,
            "singing": 1,
            "sang": 1, "song*": 1, "danc*": 1, "bright": 0.7, "wonderful": 1,
            "great time": 2, "best day": 2, "sunny": 1, "delight*": 2, "grin*": 1.5,
            "clap*": 1.5, "hurray": 2, "party": 1, "celebrat*": 1.5, "beautiful": 0.5,
        },
        "calm": {
            "quiet": 2, "quietly": 2, "sleep*": 1.5, "asleep": 1.5, "slept": 1.5,
            "nap": 2, "naps": 2, "napped": 2, "napping": 2, "gentle": 2, "gently": 2,
            "soft": 1.5, "softly": 2, "peace*": 3,
            "calm*": 2, "relax*": 2.5, "cozy": 2, "cosy": 2, "warm": 1, "bed": 1,
            "bedtime": 2, "dream*": 1.5, "rest": 1, "rested": 1.5, "slowly": 1, "hum": 1,
            "hummed": 1, "humming": 1,
            "whisper*": 1.5, "snuggl*": 2, "cuddl*": 1.5, "lullaby": 3, "moon": 0.7,
            "stars": 0.7, "breeze": 1, "still": 0.3, "sat": 0.5, "watched": 0.5,
            "blanket": 1.5, "pillow": 1.5, "night": 0.7, "tired": 1, "yawn*": 2,
            "content": 1.5, "comfort*": 1.5, "safe": 0.5,
        },
        "sad": {
            "sad": 1.5, "sadly": 2, "sadness": 2.5, "cry": 1.5, "cried": 1.5, "crying": 1.5,
            "tears": 2, "tear": 1, "sob*": 2, "weep*": 2, "upset": 1, "lost": 0.7,
            "miss": 0.7, "missed": 1, "broke": 0.7, "broken": 0.7, "alone": 1, "lonely": 1.5,
            "gone": 0.7, "died": 3, "dead": 3, "die": 2, "never again": 2,
            "never seen again": 3, "unhappy": 2, "frown*": 1, "heartbroken": 3, "hurt": 0.7,
            "sorry": 0.5, "bad ending": 3, "too late": 2, "no more": 1, "worse": 1,
            "pain": 1.5, "sick": 1, "ill": 1, "disappointed": 1.5, "gloomy": 2,
            "couldn't": 0.3, "could not": 0.3,
        },
        "funny": {
            "laugh*": 1.5, "giggl*": 2, "silly": 2, "sillier": 2, "funny": 2, "joke*": 3,
            "tickl*": 2.5, "funny face*": 3, "made faces": 3, "hilarious": 3, "goofy": 3,
            "ha ha": 2, "haha": 2, "hee hee": 2, "oops": 1.5, "clown*": 2, "prank*": 2,
            "splat": 2, "burp*": 2, "chuckl*": 2.5, "wiggl*": 1,
            "upside down": 1.5, "funniest": 3, "crazy": 1.5, "messy": 1,
            "wobbl*": 1, "bounc*": 0.5, "sneez*": 1.5, "boing": 2, "squeak*": 1,
        },
        "exciting": {
            "exciting": 2, "excited": 1, "excitement": 2, "thrill*": 2.5, "fast": 1,
            "faster": 1.5, "race": 2, "raced": 2, "racing": 2, "quick": 0.7,
            "quickly": 0.7, "hurry": 1, "hurried": 1, "suddenly": 1, "!": 0.25, "adventure*": 1,
            "zoom*": 2, "rush*": 1, "chase*": 1.5, "chasing": 1.5, "as fast as": 1.5,
            "wow": 1, "amazing": 1, "dash*": 1, "speed*": 1.5, "win": 1, "won": 1,
            "winner": 1.5, "jump*": 0.5, "ran": 0.5, "big surprise": 1.5, "can't wait": 2,
            "could not wait": 2, "couldn't wait": 2, "higher and higher": 2,
            "treasure": 1, "explor*": 1, "rocket*": 1, "fly": 0.5, "flew": 0.5,
            "climb*": 0.5, "game": 0.5, "contest": 2, "catch": 0.5,
        },
        "scary": {
            "scary": 2, "scared": 1.5, "afraid": 1, "monster*": 2, "dark": 1, "darkness": 2,
            "scream*": 2, "frightened": 2, "frightening": 2.5, "shiver*": 1.5, "spooky": 3,
            "ghost*": 2.5, "shadow*": 1.5, "danger*": 1.5, "trembl*": 1.5, "terrified": 3,
            "terrible": 1, "growl*": 1.5, "storm": 1, "thunder": 1.5, "lightning": 1.5,
            "creep*": 1.5, "strange noise": 2, "loud noise": 1.5, "roar*": 1, "shak*": 0.5,
            "run away": 0.7, "ran away": 0.7, "fear": 1.5, "worried": 0.7,
            "nervous": 0.7, "wolf": 1, "witch": 1, "trap*": 1, "never seen again": 2,
            "eaten": 2, "ate him": 3, "ate her": 3, "bite": 1, "hiss*": 1,
        },
    },
    "genre": {
        "fantasy": {
            "dragon*": 3, "princess*": 3, "prince": 2.5, "castle*": 3, "fairy": 3,
            "fairies": 3, "king": 2.5, "queen": 2.5, "kingdom*": 3, "magic": 2,
            "magical": 2, "wizard*": 3, "unicorn*": 3, "witch*": 3, "giant*": 1.5,
            "knight*": 3, "elf": 3, "elves": 3, "troll*": 3, "mermaid*": 3, "spell": 1.5,
            "spells": 1.5,
            "wand": 2, "enchant*": 3, "crown": 1.5, "potion*": 3, "genie": 3, "gnome*": 3,
            "goblin*": 3, "talking tree": 3, "wish": 0.5, "sparkl*": 0.5, "royal": 2,
            "palace": 2.5, "throne": 3, "sword": 1.5, "monster*": 1,
        },
        "animal fable": {
            **{animal: 1.0 for animal in _ANIMALS},
            "lesson": 1, "moral": 3, "the moral": 3, "learned that": 1, "learnt that": 1,
            "tail": 1, "paw*": 1.5, "fur": 1, "feathers": 1.5, "wings": 0.7, "beak": 1.5,
            "hop": 0.5, "hopped": 0.5, "hopping": 0.5, "bark*": 1, "meow*": 1.5, "woof*": 1.5,
            "quack*": 1.5,
            "chirp*": 1.5, "den": 1.5, "burrow": 1.5, "nest": 1, "hive": 1.5, "barn": 1,
            "farm": 0.7, "jungle": 0.7, "squeak*": 0.5, "hunt*": 1, "acorn*": 1,
            "carrot*": 0.5,
        },
        "everyday life": {
            "mom": 0.6, "mommy": 0.6, "mum": 0.6, "mummy": 0.6, "dad": 0.6, "daddy": 0.6,
            "park": 1.5, "school": 1.5, "home": 0.5, "house": 0.7, "toy": 0.7, "toys": 0.7,
            "kitchen": 1.5, "room": 1, "bedroom": 1.5, "store": 1.5, "shop": 1.5,
            "shopping": 2, "car": 1, "ball": 1, "playground": 2, "sand castle*": 1.5,
            "sandcastle*": 1.5, "swing*": 1, "slide": 1,
            "bath": 1.5, "lunch": 1.5, "dinner": 1.5, "breakfast": 1.5, "cookie*": 1,
            "doll*": 1, "blocks": 1, "crayon*": 1.5, "teacher*": 1.5, "class": 1,
            "backyard": 1.5, "yard": 1, "neighbo*": 1.5, "bed": 0.5, "table": 0.7,
            "clean*": 1, "mess": 1, "dress": 0.5, "shoes": 1, "shirt": 1, "window": 0.5,
            "street": 1, "supermarket": 2, "bike": 1.5, "sandbox": 1.5, "tv": 1.5,
            "birthday": 1, "cake": 0.5, "boy": 0.3, "girl": 0.3, "sandwich*": 1.5,
            "brush*": 1, "homework": 2, "doctor": 1, "bus": 1, "truck": 0.7, "train": 0.5,
            "chair": 0.7, "couch": 1, "sofa": 1,
        },
        "mystery": {
            "mystery": 3, "mysteries": 3, "mysterious": 3, "clue*": 3, "secret": 2,
            "secrets": 2, "find out": 2, "found out": 1.5, "missing": 2, "strange": 1.5,
            "hidden": 1.5, "detective*": 3, "wonder": 0.7, "wondered": 0.7, "curious": 1,
            "puzzle*": 2, "solve*": 2, "solved": 2, "where did": 1.5, "who took": 2.5,
            "footprint*": 2.5, "what was inside": 1.5, "what is inside": 1.5, "key": 1,
            "look for": 0.5, "looked for": 0.5, "looking for": 0.5, "searched": 1,
            "search*": 1, "disappear*": 2, "vanish*": 2, "investigat*": 3, "noise": 0.7,
            "sound": 0.5, "behind": 0.3, "locked": 1.5, "hid": 0.5, "unusual": 1.5,
            "weird": 1, "figure out": 2, "figured out": 2, "nobody knew": 2,
            "no one knew": 2, "who was": 1, "what was": 0.5, "map": 1, "treasure": 0.7,
        },
        "sci-fi": {
            "robot*": 3, "rocket*": 3, "space": 1, "outer space": 3, "into space": 3,
            "in space": 3, "spaceship*": 3, "spacecraft": 3, "spacesuit*": 3, "planet*": 3,
            "alien*": 3, "astronaut*": 3, "moon": 0.5, "stars": 0.3, "machine*": 2,
            "computer*": 2, "invent*": 2, "scientist*": 3, "laser*": 3, "telescope*": 2,
            "galaxy": 3, "ufo": 3, "science": 2, "experiment*": 2, "gadget*": 2,
            "future": 0.7, "time machine": 3, "metal": 0.5, "beep*": 1, "boop": 1,
            "wires": 1, "battery": 1, "batteries": 1, "mars": 3, "earth": 0.5,
            "satellite*": 3, "comet*": 2, "meteor*": 2, "asteroid*": 3, "orbit*": 3,
            "gravity": 3, "blast off": 3, "countdown": 2, "lab": 2, "laboratory": 3,
            "electric*": 1, "buttons": 0.5, "zap*": 1,
        },
    },
}

#: Per-value calibration factors applied to keyword density.  Common values ("everyday life",
#: "family", "cheerful") are damped and rare, specific ones boosted so that, over TinyStories,
#: every value is picked for a sensible share of stories.  Fitted once on a 6.7k-story
#: TinyStories sample (towards target shares such as 10% per broad theme, ~2% for sci-fi)
#: and rounded; the label rules themselves never read any data.
CALIBRATION: dict[str, dict[str, float]] = {
    "theme": {
        "adventure": 2.29, "friendship": 1.1, "kindness": 1.55, "courage": 3.74,
        "sharing": 2.17, "family": 0.8, "nature": 0.79, "magic": 2.73, "honesty": 3.26,
        "learning": 2.22,
    },
    "tone": {
        "cheerful": 1.22, "calm": 1.83, "sad": 1.26, "funny": 2.62, "exciting": 1.22,
        "scary": 1.51,
    },
    "genre": {
        "fantasy": 4.09, "animal fable": 0.9, "everyday life": 0.99, "mystery": 1.78,
        "sci-fi": 5.45,
    },
}

#: A value is chosen only if its raw weighted keyword count reaches this...
MIN_RAW_SCORE = 2.0
#: ...and its calibrated score reaches this.
MIN_SCORE = 1.5
#: :func:`mentions` is true when the raw weighted keyword count reaches this (e.g. one
#: defining keyword such as "magic", or two ordinary ones).
MENTION_THRESHOLD = 2.0
#: Keyword matches within the first words of a story (where the setting and the main
#: character are introduced) count this many times, for the ``genre`` field only.
INTRO_WORDS = 30
INTRO_BONUS = 2.0

# ---------------------------------------------------------------------------------------------
# Compiled matchers
# ---------------------------------------------------------------------------------------------


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


def _raw_scores_of(story: str, fields: Sequence[str]) -> tuple[dict[str, dict[str, float]], int]:
    """Weighted keyword counts of each of ``fields`` (one pass over the tokens) and the number
    of words of ``story``.  Only ``genre`` gives the first :data:`INTRO_WORDS` tokens the
    :data:`INTRO_BONUS`."""
    lowered = story.lower()
    tokens = _Tokens(lowered.replace("’", "'"))
    n_words = len(_TOKEN_RE.findall(lowered)) if "’" in lowered else len(tokens.words)
    slots = [_FIELD_ORDER.index(field) for field in fields]
    scores = [dict.fromkeys(_FIELD_VALUES[field], 0.0) for field in fields]
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


def _check_field(field: str) -> tuple[str, ...]:
    try:
        return _FIELD_VALUES[field]
    except KeyError:
        raise ValueError(
            f"unknown label field {field!r}; choose one of: {', '.join(_FIELD_VALUES)}"
        ) from None


def _raw_scores(story: str, field: str) -> dict[str, float]:
    _check_field(field)
    return _raw_scores_of(story, (field,))[0][field]


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryLabels:
    """The control settings of one story; empty fields mean "unspecified"."""

    theme: str | None = None
    tone: str | None = None
    genre: str | None = None
    characters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.characters, tuple):  # accept any sequence, store a tuple
            object.__setattr__(self, "characters", tuple(self.characters))


def label_scores(story: str, field: str) -> dict[str, float]:
    """Calibrated score of every value of ``field`` ("theme", "tone" or "genre") for ``story``.

    The score is the weighted keyword count per 100 words (at least 50 words are assumed, so
    very short texts are not over-rewarded), times the value's :data:`CALIBRATION` factor.
    Values are returned in the field's canonical order.
    """
    _check_field(field)
    raw, n_words = _raw_scores_of(story, (field,))
    return _calibrated(field, raw[field], n_words)


def _calibrated(field: str, raw: dict[str, float], n_words: int) -> dict[str, float]:
    """Calibrated scores from raw weighted counts (see :func:`label_scores`)."""
    n_words = max(n_words, 50)
    factors = CALIBRATION[field]
    return {value: raw[value] * 100.0 / n_words * factors[value] for value in raw}


def _best_value(field: str, raw: dict[str, float], n_words: int) -> str | None:
    scores = _calibrated(field, raw, n_words)
    best: str | None = None
    for value in _FIELD_VALUES[field]:  # fixed order: earlier values win ties
        if raw[value] < MIN_RAW_SCORE or scores[value] < MIN_SCORE:
            continue
        if best is None or scores[value] > scores[best]:
            best = value
    return best


def derive_labels(story: str) -> StoryLabels:
    """Derive theme, tone, genre and characters of ``story`` deterministically.

    Each of theme/tone/genre is the best-scoring value of :func:`label_scores` (ties broken by
    the order of :data:`THEMES` / :data:`TONES` / :data:`GENRES`), or ``None`` when no value
    has enough evidence (:data:`MIN_RAW_SCORE`, :data:`MIN_SCORE`).
    """
    raw, n_words = _raw_scores_of(story, _FIELD_ORDER)
    return StoryLabels(
        theme=_best_value("theme", raw["theme"], n_words),
        tone=_best_value("tone", raw["tone"], n_words),
        genre=_best_value("genre", raw["genre"], n_words),
        characters=find_characters(story),
    )


def mentions(story: str, field: str, value: str) -> bool:
    """True when ``story`` contains keyword evidence of ``value`` for ``field``.

    Used to measure whether a generated story follows the requested setting.  ``field`` may
    also be "characters", in which case ``value`` is a name that must appear as a whole word.
    ``value`` is normalised with :func:`validate_choice` (so "Sci-Fi" works).
    """
    if field == "characters":
        name = value.strip()
        if not name:
            raise ValueError("empty character name")
        return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", story) is not None
    canonical = validate_choice(field, value)
    if canonical is None:
        raise ValueError(f"empty {field} value")
    return _raw_scores(story, field)[canonical] >= MENTION_THRESHOLD


# ---------------------------------------------------------------------------------------------
# User choices
# ---------------------------------------------------------------------------------------------

_ALIASES: dict[str, dict[str, str]] = {
    "theme": {"friends": "friendship", "kind": "kindness", "brave": "courage",
              "bravery": "courage", "share": "sharing", "magical": "magic",
              "honest": "honesty", "learn": "learning"},
    "tone": {"happy": "cheerful", "peaceful": "calm", "silly": "funny",
             "excited": "exciting", "spooky": "scary"},
    "genre": {"animal": "animal fable", "animals": "animal fable", "fable": "animal fable",
              "everyday": "everyday life", "scifi": "sci-fi", "sci fi": "sci-fi",
              "science fiction": "sci-fi"},
}


def _norm_choice(text: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", text.strip().lower()).split())


def validate_choice(field: str, value: str | None) -> str | None:
    """Normalise a user's ``theme``/``tone``/``genre`` choice to its canonical value.

    ``None`` or a blank string give ``None``.  Matching ignores case and treats "_", "-" and
    spaces alike ("Sci-Fi" -> "sci-fi", "animal_fable" -> "animal fable"); a few aliases are
    accepted ("scifi", "happy", ...).  Anything else raises ``ValueError`` listing the valid
    values.
    """
    values = _check_field(field)
    if value is None or not value.strip():
        return None
    key = _norm_choice(value)
    for canonical in values:
        if _norm_choice(canonical) == key:
            return canonical
    alias = _ALIASES[field].get(key)
    if alias is not None:
        return alias
    choices = ", ".join(sorted(values))
    raise ValueError(f"unknown {field} '{value.strip()}'; choose one of: {choices}")


MAX_CHARACTERS = 6
MAX_NAME_LENGTH = 30
_NAME_OK_RE = re.compile(r"^[^\W\d_](?:[^\W\d_]|[ '’-])*$")


def parse_characters(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of character names given by a user.

    ``" alice ,  bob "`` -> ``("Alice", "Bob")``: names are stripped (inner runs of spaces
    collapsed), empty entries and case-insensitive duplicates dropped, the user's casing kept
    except that the first letter is capitalised.  Raises ``ValueError`` for a name with
    characters other than letters, spaces, hyphens and apostrophes, a name longer than
    :data:`MAX_NAME_LENGTH` characters, or more than :data:`MAX_CHARACTERS` names.
    """
    names: list[str] = []
    seen: set[str] = set()
    for part in (text or "").split(","):
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"character name {name!r} is too long ({len(name)} characters, "
                f"at most {MAX_NAME_LENGTH})"
            )
        if not _NAME_OK_RE.match(name):
            raise ValueError(
                f"invalid character name {name!r}: use only letters, spaces, hyphens "
                "and apostrophes, starting with a letter"
            )
        name = name[0].upper() + name[1:]
        if name.casefold() in seen:
            continue
        seen.add(name.casefold())
        names.append(name)
    if len(names) > MAX_CHARACTERS:
        raise ValueError(f"too many characters ({len(names)}); at most {MAX_CHARACTERS}")
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# Control prefix
# ---------------------------------------------------------------------------------------------


def control_prefix(labels: StoryLabels) -> str:
    """The text placed before a story, e.g.
    ``"<|theme|> adventure<|tone|> cheerful<|genre|> fantasy<|characters|> Alice, Bob<|story|>"``.

    Empty fields are omitted; the order is always theme, tone, genre, characters, and the
    prefix always ends with :data:`STORY_START` (so ``StoryLabels()`` gives ``"<|story|>"``).
    """
    parts: list[str] = []
    if labels.theme:
        parts.append(f"<|theme|> {labels.theme}")
    if labels.tone:
        parts.append(f"<|tone|> {labels.tone}")
    if labels.genre:
        parts.append(f"<|genre|> {labels.genre}")
    if labels.characters:
        parts.append(f"<|characters|> {', '.join(labels.characters)}")
    parts.append(STORY_START)
    return "".join(parts)


def drop_fields(labels: StoryLabels, rng: random.Random, p: float = 0.3) -> StoryLabels:
    """Drop each of the four fields independently with probability ``p``.

    Exactly four ``rng.random()`` draws are made (theme, tone, genre, characters), whether or
    not a field is set, so the random stream does not depend on the labels.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be between 0 and 1, got {p}")
    changes: dict[str, object] = {}
    for f in fields(StoryLabels):
        if rng.random() < p:
            changes[f.name] = () if f.name == "characters" else None
    return replace(labels, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------------

MAX_FOUND_CHARACTERS = 4

#: Capitalised words that are never character names: function words, interjections,
#: family words and titles, calendar words, and words that TinyStories capitalises often.
_NOT_NAMES: frozenset[str] = frozenset(_words("""
    a an the this that these those there here then than so and but or nor if when while as
    after before because since until till once one two three four five six seven eight nine
    ten first second third last next every each all both some many much most more few lots
    no not never none nobody nothing noone nowhere always sometimes often soon later now
    today tonight tomorrow yesterday finally suddenly eventually meanwhile afterwards instead
    however although though even still also just only maybe perhaps really very too again
    together everyone everybody everything everywhere someone somebody something somewhere
    anyone anybody anything anywhere people friends friend kids children child
    i me my mine myself you your yours yourself we us our ours he him his himself she her hers
    herself it its itself they them their theirs themselves who whom whose what which why how
    where whenever wherever whatever whoever
    is am are was were be been being do does did done have has had having can could will would
    shall should may might must let lets let's go goes went come came get got give gave take
    took make made look looked see saw watch listen hold keep put run stop wait help eat try
    please thank thanks sorry welcome okay ok yes yeah yep no nope hi hello hey bye goodbye
    goodnight oh ah aha uh um oops ouch ow wow yay yum yummy yuck hooray hurray hurrah whoa
    ha haha hehe hmm mmm shh psst boo woof meow moo quack tweet oink baa ribbit buzz zoom
    splash bang boom pop crash knock ding dong achoo tada ta
    mom mommy mum mummy mama mamma momma ma dad daddy dada papa pa pops grandma grandpa granny
    grandmother grandfather grandad granddad nana nan gran gramps auntie aunt uncle
    sis bro baby brother sister mother father son daughter honey sweetie dear darling sweetheart
    mr mrs ms miss dr doctor sir madam lady mister master missus professor captain officer
    teacher nurse chef farmer king queen prince princess sheriff judge coach
    god jesus lord santa claus
    monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays
    thursdays fridays saturdays sundays january february march april may
    june july august september october november december
    christmas easter halloween thanksgiving valentine valentines birthday summer winter
    spring autumn fall
    end moral lesson chapter part story title
    earth mars english french spanish america american england london paris canada china
    africa india japan australia europe university museum zoo
    in on at to for from with without by of off up down out over under into onto inside
    outside behind beside near far around about across through along above below between
    with within upon like unlike
    """))

_TITLES: frozenset[str] = frozenset(
    {"mr", "mrs", "ms", "miss", "dr", "mister", "missus", "sir", "lady", "uncle", "aunt",
     "auntie", "grandma", "grandpa", "granny", "king", "queen", "prince", "princess",
     "captain", "professor", "officer", "teacher", "coach", "farmer", "doctor", "nurse",
     "chef", "saint", "st", "madam"}
)

#: Adjectives and colours that TinyStories capitalises at the start of a sentence ("Blue
#: birds flew") or in titles; they count as names only when introduced ("a bird named Blue").
_NAMES_ONLY_IF_INTRODUCED: frozenset[str] = frozenset(_words("""
    little big small tiny giant old young new good bad best great nice happy sad silly funny
    blue red green yellow orange purple pink black white brown gray grey gold golden silver
    sun moon star sky rain snow cloud sunny lucky brave kind sweet dear fluffy furry
    """))

#: Determiners before a capitalised word mean it is a noun, not a name ("the Ball").
_DETERMINERS: frozenset[str] = frozenset(
    {"a", "an", "the", "my", "your", "his", "her", "our", "their", "this", "that", "its"}
)

#: Words that introduce a name: "a dog named Spot", "a boy called Bobo", "her name was Sue".
_INTRO_RE = re.compile(
    r"\b(?:named|called|name\s+is|name\s+was|name's)\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b"
)
#: A capitalised word, with an optional contraction/possessive suffix.
_CAP_WORD_RE = re.compile(r"\b([A-Z][a-z]+(?:-[A-Z][a-z]+)?)(['’][a-z]+)?\b")
_CAP_AFTER_RE = re.compile(r"[ \t]+[A-Z][a-z]")
_CAP_BEFORE_RE = re.compile(r"\b([A-Z][a-z]+)[ \t]+$")
#: Capitalised words that may directly precede a name ("Hi Tim", "Little John").
_WORDS_BEFORE_NAMES: frozenset[str] = frozenset(_words("""
    little big baby old young tiny hi hello hey thanks thank bye goodbye goodnight oh ah yes
    no yeah sorry please dear ok okay wow look come well good morning night welcome go run
    stop help wait watch listen hooray yay poor silly
    """))
_SENTENCE_END = set(".!?:;\"'“”‘’()[]*-—–")

#: Common TinyStories character names with their usual gender (used by :func:`swap_names`
#: and to accept names that only ever start a sentence).
_KNOWN_FEMALE: frozenset[str] = frozenset(_words("""
    Lily Sue Lucy Mia Amy Sally Daisy Sarah Sara Jane Emma Anna Mary Molly Bella Ella Grace
    Emily Luna Lola Millie Milly Sophie Tina Polly Rose Betty Poppy Penny Lisa Annie Rachel
    Julie Jenny Jen Ann Lizzie Rosie Emmy Susie Claire Dolly Lilly Alice Abigail Kate Mandy
    Gina Jenna Ellie Jill Tilly Lila Lulu Julia Mimi Zoe Chloe Kim Amelia Olivia Ava Sophia
    Isabella Katie Meg Maggie Nina Hannah Laura Linda Susan Karen Beth Jess Jessica Megan
    Olive Lizzy Maddie Lucie Lexi Leah Ruby Hazel Ivy Violet Stella Nora Hattie Eva
    """))
_KNOWN_MALE: frozenset[str] = frozenset(_words("""
    Tim Tom Max Timmy Sam Bob Jack Ben Billy John Joe Benny Andy Jerry Sammy Bobby Leo Fred
    Peter Jake Pete Mark Bill Jimmy Harry James Henry Gary Todd Johnny Freddy George Dave
    Ollie Jim Tommy Joey Danny Tony Finn Fin Toby Mike Michael David Daniel Adam Luke Paul
    Steve Kevin Ryan Jason Eric Nick Matt Josh Chris Roy Ted Ned Ron Don Dan Rob Bert Ernie
    Oliver Jacob Ethan Lucas Mason Logan Noah Liam Owen Jayden Ricky Robbie Robert Richard
    William Willy Walter Frank Larry Simon Carl Kyle Zack Zach Luis Jose Juan Carlos
    """))

#: Names TinyStories gives to animals; treated as animal names by :func:`swap_names`.
_KNOWN_PET_NAMES: frozenset[str] = frozenset(_words("""
    Spot Fluffy Kitty Bobo Whiskers Buddy Mittens Chirpy Tweetie Tweety Tweet Ducky Momo
    Buzz Buzzy Spike Rover Doggy Birdy Pandy Bongo Coco Nutty Brownie Snowy Patch Fido Rex
    Pip Binky Pinky Speedy Zoom Hoppy Bunny Teddy Bubbles Sparky Fuzzy Furry Squeaky Shelly
    Goldie Tiger Lucky Sunny Smokey Muffin Peanut Cookie Jazz Boo Puff Nibbles
    Flappy Quacky Hoot Hooty Slimy Slither Stripes Spotty Oreo Ginger Blue Red
    """))

#: Alternation of the animal words of the "animal fable" lexicon ("dog*" -> dog\w*).
_ANIMAL_WORDS_RE = re.compile(
    "|".join(
        re.escape(animal.rstrip("*")) + (r"\w*" if animal.endswith("*") else "")
        for animal in _ANIMALS
        if animal != "animal*"
    ),
    re.IGNORECASE,
)


def _is_sentence_initial(story: str, start: int) -> bool:
    """Only whitespace (without a line break), or punctuation that ends a sentence, comes
    between the previous word and ``start``."""
    j = start
    while j > 0 and story[j - 1].isspace():
        j -= 1
    if j == 0 or "\n" in story[j:start]:
        return True
    return story[j - 1] in _SENTENCE_END


_PREVIOUS_WORD_RE = re.compile(r"([A-Za-z]+)\W*$")
_LOWER_WORD_RE = re.compile(r"\b[a-z][a-z'-]*\b")


def _previous_word(story: str, start: int) -> str:
    match = _PREVIOUS_WORD_RE.search(story, max(0, start - 40), start)
    return match.group(1).lower() if match else ""


def find_characters(story: str) -> tuple[str, ...]:
    """Named characters of ``story`` in order of first appearance (at most 4).

    A capitalised word counts as a name when it is introduced ("a dog named Spot", "called
    Bobo"), or appears capitalised in the middle of a sentence, or is a well-known
    TinyStories name that only ever starts sentences (and never appears in lower case).
    Function words, interjections, family words and titles (Mom, Dad, Grandma, Mr, Mrs,
    Miss ...), days, months, "God", "End", and adjectives such as "Little" or "Blue" used at
    the start of a sentence are excluded.  A word following a title ("Mr. Brown") or a
    determiner ("the Ball") is not a name.  Possessives ("Lily's") count as the name.
    """
    first_pos: dict[str, int] = {}
    mid_count: dict[str, int] = {}
    introduced: set[str] = set()
    titled: set[str] = set()
    for match in _INTRO_RE.finditer(story):
        introduced.add(match.group(1))
    for match in _CAP_WORD_RE.finditer(story):
        word, suffix = match.group(1), match.group(2)
        if suffix and suffix[1:] != "s":  # contractions such as Don't, I'm, Let's
            continue
        lower = word.lower()
        if lower in _NOT_NAMES or len(word) < 2:
            continue
        first_pos.setdefault(word, match.start())
        previous = _previous_word(story, match.start())
        if previous in _TITLES:
            titled.add(word)
            continue
        if _is_sentence_initial(story, match.start()) or previous in _DETERMINERS:
            continue
        if _CAP_AFTER_RE.match(story, match.end()):
            continue  # "Little John", or a Title Case run such as "No Dogs Allowed"
        prev_cap = _CAP_BEFORE_RE.search(story, max(0, match.start() - 40), match.start())
        if prev_cap and prev_cap.group(1).lower() not in _WORDS_BEFORE_NAMES:
            continue  # inside a Title Case run ("Happy Factory"), unless "Hi Tim", "Little John"
        mid_count[word] = mid_count.get(word, 0) + 1
    lower_words: set[str] | None = None  # words written in lower case, found if needed
    names = []
    for word in sorted(first_pos, key=first_pos.__getitem__):
        if word in titled and word not in introduced and mid_count.get(word, 0) == 0:
            continue
        if word in introduced:
            accept = True
        elif word.lower() in _NAMES_ONLY_IF_INTRODUCED:
            accept = mid_count.get(word, 0) >= 2
        elif mid_count.get(word, 0) > 0:
            accept = True
        elif word in _ALL_KNOWN_NAMES:
            if lower_words is None:
                lower_words = set(_LOWER_WORD_RE.findall(story))
            accept = word.lower() not in lower_words
        else:
            accept = False
        if accept:
            names.append(word)
            if len(names) == MAX_FOUND_CHARACTERS:
                break
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# Name pool and name swapping
# ---------------------------------------------------------------------------------------------

#: First names from many cultures used to replace character names during training, so that
#: the model learns to write about any name given with ``--characters``.  ASCII letters only,
#: 2-10 letters, capitalised, no duplicates across lists, and no ordinary English words (a
#: swapped-in name must not look like a keyword of a label lexicon).
NAME_POOL: dict[str, tuple[str, ...]] = {
    "female": tuple(_words("""
        Zara Aiko Ines Priya Noor Amara Ayesha Fatima Leila Yasmin Mei Hana Yuki Sakura Keiko
        Emiko Naomi Mina Jia Xiu Ling Suki Misaki Haruka Yumi Nari Minji Hyejin Seoyeon
        Ananya Anika Diya Isha Kavya Meera Nisha Pooja Riya Sana Asha Lakshmi Divya Gita
        Nandini Sunita Aditi Amira Aisha Layla Zainab Mariam Salma Rania Dina Hiba Lina Nadia
        Samira Huda Farah Yara Rana Ama Abena Adaeze Chiamaka Ngozi Nia Imani Zuri Folake Kemi
        Nkechi Thandi Zola Wanjiru Akosua Efua Makena Nala Sade Yetunde Halima Ife Sofia Elena
        Clara Greta Ingrid Freya Astrid Elsa Sigrid Lena Anja Katya Olga Irina Natasha Milena
        Zofia Agata Marta Lucia Chiara Giulia Paola Carmen Pilar Beatriz Leonor Mathilde
        Margaux Celine Colette Amelie Eloise Heidi Liesel Saoirse Niamh Aoife Siobhan Fiona
        Isla Maeve Cerys Ivana Petra Zuzana Ilona Annika Maja Ebba Linnea Camila Valentina
        Ximena Paloma Marisol Itzel Citlali Renata Daniela Gabriela Mariana Fernanda Isabela
        Leilani Malia Anela Mahina Aroha Ngaire Kiri Harriet Matilda Beatrice Florence Imogen
        Phoebe Edith Esme Cora Maisie Audrey Evelyn Maya Shira Tamar Dalia Shirin Parisa Roya
        Nasrin Elif Zeynep Ayla Defne Linh Thu Hoa Ngoc Siti Putri Dewi Ayu Malee Kanya
        Anahera Sina Wilhelmina Rosalind Ottilie Juniper Ayasha Winona Kaya Talise
        """)),
    "male": tuple(_words("""
        Milo Kofi Mateo Sven Olu Kenji Hiroshi Takumi Haruto Sota Daiki Kaito Yuto Riku Wei
        Jun Hao Ming Chen Jian Lei Tao Minho Jisung Hyun Seojun Taeyang Arjun Rohan Ravi
        Vikram Aarav Dev Kabir Rahul Sanjay Vivek Anil Ishaan Karan Nikhil Amit Rajesh Sunil
        Aditya Pranav Omar Yusuf Karim Tariq Samir Hassan Ali Bilal Idris Zayd Faris Rami
        Nabil Khalid Hamza Ibrahim Malik Amir Jamal Ziad Kwame Kwesi Tunde Chidi Emeka Obi
        Jabari Baraka Juma Thabo Sipho Mandla Kato Musa Femi Ade Kojo Chinedu Kamau Otieno
        Lars Nils Erik Bjorn Anders Olaf Leif Jonas Matteo Luca Marco Paolo Giorgio Enzo
        Diego Pablo Javier Rafael Tomas Hugo Louis Pierre Julien Luc Bastien Felix Lukas
        Anton Moritz Emil Oskar Ivan Dmitri Pavel Mikhail Boris Milan Marek Jakub Piotr
        Stefan Niko Aleksi Eino Cian Oisin Declan Rhys Owain Callum Angus Fergus Finlay
        Seamus Conor Santiago Joaquin Emiliano Rodrigo Thiago Gael Iker Mauricio Alonso Bruno
        Caio Davi Inti Keanu Makoa Nikolai Elias Theo Arlo Otto Jasper Rufus Alfie Archie
        Oscar Edgar Silas Ezra Eli Isaac Caleb Gideon Reuben Levi Samuel Jonah Ahmed Mustafa
        Yosef Avi Eitan Noam Ilan Arash Dariush Reza Kian Mehmet Emre Burak Kerem Arda Minh
        Duc Bao Quang Huy Tuan Somchai Anan Rizal Budi Agus Joko Sione Tane Wiremu Rawiri
        """)),
    "neutral": tuple(_words("""
        Kai Ayo Ren Sasha Jordan Taylor Morgan Riley Casey Jamie Quinn Charlie Frankie Kalani
        Noa Amani Nuri Ari Tenzin Dana Shiloh Emery Ellis Hayden Harper Jules Marley Reese
        Skyler Teagan Toni Zion Nima Kiran Kamari Jaden Dakota Cameron Rory Sidney Blair
        Ainsley Arden Darcy Devon Elliot Emerson Hollis Jessie Kendall Lennon Lennox Micah
        Oakley Parker Peyton Tatum Umi Yael Haru Hikaru Akira Makoto Kaoru Lumi Mika Nikita
        Jin Tendai Anh Sol Eden Avery Remi Koa Alexis Ashley Adrian
        """)),
}

#: Names for animal characters (pets and the heroes of animal fables).
PET_NAMES: tuple[str, ...] = tuple(_words("""
    Biscuit Pepper Mochi Ziggy Noodle Pickles Waffles Nugget Sprinkles Toffee Maple Pumpkin
    Marble Pebbles Clover Domino Gizmo Jellybean Tofu Dumpling Wasabi Paprika Cinnamon Nutmeg
    Sesame Cocoa Fudge Truffle Popcorn Pudding Zuzu Kiki Bramble Thistle Scruffy Patches
    Sprout Tumble Pogo Bingo Yoyo Taco Kiwi Mango Tiko Zippy Flick Squiggle Puddles Ripple
    Dottie Waddles Mopsy Pancake Bamboo Barnaby Figaro Rascal Tinker Wiggins
    """))

_ALL_KNOWN_NAMES: frozenset[str] = frozenset(
    name
    for name in _KNOWN_FEMALE
    | _KNOWN_MALE
    | _KNOWN_PET_NAMES
    | {n for names in NAME_POOL.values() for n in names}
    | set(PET_NAMES)
    if name.lower() not in _NAMES_ONLY_IF_INTRODUCED
)
_POOL_GENDER: dict[str, str] = {
    name: gender for gender, names in NAME_POOL.items() for name in names
}

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


_ANIMAL_WORD_SOURCE = rf"\b(?:{_grouped_alternation([a for a in _ANIMALS if a != 'animal*'])})\b"
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
    if name in _KNOWN_FEMALE:
        return "female"
    if name in _KNOWN_MALE:
        return "male"
    if name in _KNOWN_PET_NAMES or name in PET_NAMES:
        return "animal"
    if name in _POOL_GENDER:
        return _POOL_GENDER[name]
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
