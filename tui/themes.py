"""The app's own theme: bedtime (dim, warm and calm; the built-in dark and light are Textual's)."""

from __future__ import annotations

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
