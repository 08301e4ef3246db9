"""The app's own theme: bedtime (dim, warm and calm; the built-in dark and light are Textual's),
and the palette's theme list, which leaves bedtime out (F5 switches bedtime mode)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.theme import Theme

BEDTIME_THEME = Theme(
    name="grain-bedtime",
    primary="#7B70A8",  # dusk lavender
    secondary="#4F5B8C",
    accent="#C9A86A",  # candle light
    warning="#C9A86A",
    error="#B8707A",
    success="#7FA58A",
    foreground="#D6CCBA",  # warm paper
    background="#141220",
    surface="#1B1929",
    panel="#232035",
    dark=True,
)


class ThemeChooser(Protocol):
    """The app, as the theme list sees it."""

    available_themes: dict[str, Theme]

    def choose_theme(self, name: str) -> None:
        """Use (and remember) the theme ``name``."""


class ThemeProvider(Provider):
    """The palette's "Theme" list: every theme but bedtime; the choice is remembered."""

    def _themes(self) -> list[tuple[str, Callable[[], None]]]:
        app = cast("ThemeChooser", self.app)
        themes = sorted(app.available_themes.values(), key=attrgetter("name"))
        return [(theme.name, partial(app.choose_theme, theme.name)) for theme in themes
                if theme.name != BEDTIME_THEME.name]

    async def discover(self) -> Hits:
        """All the themes, by name."""
        for name, choose in self._themes():
            yield DiscoveryHit(name, choose)

    async def search(self, query: str) -> Hits:
        """The themes whose name matches ``query``."""
        matcher = self.matcher(query)
        for name, choose in self._themes():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), choose)
