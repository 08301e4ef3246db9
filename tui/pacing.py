"""Story updates at the pace of the screen, not of the model.

The model writes a piece per token (over 1,000 a second on a CPU); a message, a re-layout and
a repaint per token cost the UI thread more than the model's work, and both share one
interpreter. :class:`FramePacer` sits between the story session and the UI: it passes the
first new token on at once (the first word appears as soon as it is written), then at most
one update per frame, each carrying all the text written since the last one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from .session import StoryUpdate

#: The longest a piece waits for the screen (seconds): 4 updates a second at most. Each
#: update costs the UI thread a frame (5-10 ms on 2 cores), time the model loses.
FRAME_SECONDS = 0.25


class FramePacer:
    """Called with every update from the model's thread; calls ``show`` with merged updates:
    the first token and the last piece at once, others at most every ``interval`` seconds (a
    piece waits at most ``interval`` or until the next one, whichever is later)."""

    def __init__(self, show: Callable[[StoryUpdate], None], interval: float = FRAME_SECONDS,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._show = show
        self._interval = interval
        self._clock = clock
        self._held: list[str] = []
        self._shown_at = -math.inf
        self._first_token_shown = False

    def __call__(self, update: StoryUpdate) -> None:
        """Take the model's next update; pass on what waited when it is time."""
        self._held.append(update.text)
        now = self._clock()
        first_token = not self._first_token_shown and update.n_tokens > 0
        if (update.finish_reason is None and not first_token
                and now - self._shown_at < self._interval):
            return
        self._first_token_shown |= first_token
        self._shown_at = now
        text, self._held = "".join(self._held), []
        self._show(replace(update, text=text))
