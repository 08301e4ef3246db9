"""The Library's filter line: theme, tone, genre and character, each "any" or one value."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select

from saga_model import GENRES, THEMES, TONES

from ..library import Filters

ANY = ""


def _options(field: str, values: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f"any {field}", ANY), *((value, value) for value in values)]


class LibraryFilters(Horizontal):
    """Four compact pickers; :meth:`read` gives the chosen :class:`~tui.library.Filters`."""

    def compose(self) -> ComposeResult:
        """One picker per setting."""
        for field, values in (("theme", THEMES), ("tone", TONES), ("genre", GENRES),
                              ("character", [])):
            yield Select(_options(field, values), value=ANY, allow_blank=False, compact=True,
                         id=f"filter-{field}")

    def read(self) -> Filters:
        """The chosen filters."""
        return Filters(**{field: str(self.query_one(f"#filter-{field}", Select).value)
                          for field in ("theme", "tone", "genre", "character")})

    def clear(self) -> None:
        """Back to "any" everywhere."""
        for select in self.query(Select):
            select.value = ANY

    def set_characters(self, names: list[str]) -> None:
        """Offer these character names (keeping the chosen one while it is still there)."""
        select = self.query_one("#filter-character", Select)
        chosen = str(select.value)
        with select.prevent(Select.Changed):
            select.set_options(_options("character", names))
            select.value = chosen if chosen in names else ANY
