"""Remappable keys: every key binding has an id, and ``[keymap]`` in the preferences maps ids
to other keys, e.g. ``generate = "ctrl+w"`` or ``copy = "ctrl+y,f9"``.

:func:`check_keymap` keeps the entries that can work and explains the others: an unknown id,
something that is not a key, a key another binding of the same screen already uses, a key
the app reserves, or a plain letter for a key that works while typing in a field (it could no
longer be typed). The app applies what is left with ``App.set_keymap``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual.binding import Binding, BindingType
from textual.keys import Keys, _normalize_key_list, key_to_character

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED = frozenset(key.value for key in Keys if "+" not in key.value and
                   not key.value.startswith("<"))
#: Keys of Textual itself: quit, copy / quit hint, command palette, focus moves.
RESERVED = frozenset({"ctrl+q", "ctrl+c", "ctrl+p", "tab", "shift+tab"})


def valid_key(key: str) -> bool:
    """Whether ``key`` names a key Textual knows, e.g. ``ctrl+g``, ``f6``, ``escape``, ``x``."""
    *modifiers, name = key.split("+")
    if len(set(modifiers)) != len(modifiers) or not set(modifiers) <= MODIFIERS or not name:
        return False
    if len(name) == 1:
        return name.isprintable() and not name.isspace()
    return name in _NAMED or key_to_character(name) is not None


def _types_text(key: str) -> bool:
    """Whether pressing ``key`` in a text field types a character."""
    character = key_to_character(key)
    return bool(character) and character.isprintable()


def binding_ids(scopes: Mapping[str, Sequence[BindingType]]) -> set[str]:
    """The ids of the bindings in ``scopes``."""
    return {b.id for bindings in scopes.values() for b in bindings
            if isinstance(b, Binding) and b.id}


def _clash(keymap: Mapping[str, str], changed: str, scopes: Mapping[str, Sequence[BindingType]],
           shared: Sequence[BindingType]) -> str | None:
    """Why the keys of binding ``changed`` cannot be used with ``keymap``, if they cannot."""
    for scope, bindings in scopes.items():
        claimed: dict[str, Binding] = {}
        for binding in [*shared, *bindings]:
            if not isinstance(binding, Binding):
                continue
            keys = keymap.get(binding.id or "", binding.key)
            for key in _normalize_key_list(keys).split(","):
                other = claimed.get(key)
                if other is not None and other.id != binding.id \
                        and changed in (other.id, binding.id):
                    return f"{key} is already {other.description or other.action} ({scope})"
                claimed[key] = binding
    return None


def check_keymap(requested: Mapping[str, str], scopes: Mapping[str, Sequence[BindingType]],
                 shared: Sequence[BindingType]) -> tuple[dict[str, str], list[str]]:
    """The usable entries of ``requested`` and a message for each other one.

    ``scopes`` are the bindings active together (a screen's), ``shared`` those active
    everywhere (the app's).
    """
    all_scopes = {"everywhere": shared, **scopes}
    known = binding_ids(all_scopes)
    priority = {b.id for bindings in all_scopes.values() for b in bindings
                if isinstance(b, Binding) and b.id and b.priority}
    accepted: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, keys in requested.items():
        parts = [key.strip() for key in keys.split(",")]
        normal = _normalize_key_list(keys).split(",")
        if binding_id not in known:
            problems.append(f"{binding_id}: there is no key binding with this id")
        elif not all(valid_key(key) for key in parts):
            problems.append(f"{binding_id} = {keys!r}: not a key name (e.g. ctrl+w, f6, x)")
        elif reserved := [key for key in normal if key in RESERVED]:
            problems.append(f"{binding_id} = {keys!r}: {reserved[0]} is reserved")
        elif binding_id in priority and any(map(_types_text, normal)):
            problems.append(f"{binding_id} = {keys!r}: this key works while you type in a "
                            "field, so it needs a modifier (e.g. ctrl+) or a function key")
        elif reason := _clash({**accepted, binding_id: ",".join(parts)}, binding_id, scopes,
                              shared):
            problems.append(f"{binding_id} = {keys!r}: {reason}")
        else:
            accepted[binding_id] = ",".join(parts)
    return accepted, problems
