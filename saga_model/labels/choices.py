"""User choices from the command line and the app: label values and character names."""

from __future__ import annotations

import re
import unicodedata

from ..prefix import field_values

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
    values = field_values(field)
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
    collapsed, accents composed: NFC), empty entries and case-insensitive duplicates dropped,
    the user's casing kept except that the first letter is capitalised.  Raises ``ValueError``
    for a name with characters other than letters, spaces, hyphens and apostrophes, a name
    longer than :data:`MAX_NAME_LENGTH` characters, or more than :data:`MAX_CHARACTERS` names.
    """
    names: list[str] = []
    seen: set[str] = set()
    for part in unicodedata.normalize("NFC", text or "").split(","):
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"character name '{name[:MAX_NAME_LENGTH]}…' is too long ({len(name)} characters, "
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

