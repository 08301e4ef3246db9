"""Finding the named characters of a story."""

from __future__ import annotations

import re

from .names import ALL_KNOWN_NAMES, NAMES_ONLY_IF_INTRODUCED, word_list

MAX_FOUND_CHARACTERS = 4

#: Capitalised words that are never character names: function words, interjections,
#: family words and titles, calendar words, and words that TinyStories capitalises often.
_NOT_NAMES: frozenset[str] = frozenset(word_list("""
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
_WORDS_BEFORE_NAMES: frozenset[str] = frozenset(word_list("""
    little big baby old young tiny hi hello hey thanks thank bye goodbye goodnight oh ah yes
    no yeah sorry please dear ok okay wow look come well good morning night welcome go run
    stop help wait watch listen hooray yay poor silly
    """))
_SENTENCE_END = set(".!?:;\"'“”‘’()[]*-—–")


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
        elif word.lower() in NAMES_ONLY_IF_INTRODUCED:
            accept = mid_count.get(word, 0) >= 2
        elif mid_count.get(word, 0) > 0:
            accept = True
        elif word in ALL_KNOWN_NAMES:
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

