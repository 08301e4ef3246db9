"""``grain-tui --inline``: one story written under the shell prompt, then back to the shell.

A small Textual app in inline mode shows the story as it streams (its last lines) and a
status line; when the story is done (or escape / ctrl+c stops it) the app clears itself and
the command prints the whole story to standard output, where it stays in the scrollback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import get_current_worker

import saga_model
from saga_model import SagaError

from .models import ModelCache
from .threads import run_in_fresh_thread
from .widgets.generation_status import GenerationStatus
from .widgets.story_view import StoryView

if TYPE_CHECKING:
    from saga_model import SamplingOptions, StoryPiece, StoryRequest


class InlineStoryApp(App[str]):
    """Streams one story; returns its text (what was written, if stopped early).

    A model that cannot be loaded or a generation error ends the app with :attr:`error` set.
    """

    AUTO_FOCUS = None  # nothing to type into: no focus frame around the story
    CSS = """
    Screen { height: auto; }
    StoryView { height: auto; max-height: 12; padding: 0; }
    GenerationStatus { padding: 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,ctrl+c", "stop", "Stop", id="stop", priority=True),
    ]

    class Piece(Message):
        """A piece of the story from the worker."""

        def __init__(self, piece: StoryPiece) -> None:
            super().__init__()
            self.piece = piece

    class Failed(Message):
        """The worker could not load the model or generate."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, request: StoryRequest, options: SamplingOptions, model: Path) -> None:
        super().__init__()
        self.request = request
        self.options = options
        self.model = model
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        """The story and a status line."""
        yield StoryView(id="story-view")
        yield GenerationStatus(id="generation-status")

    def on_mount(self) -> None:
        """Start writing."""
        self.query_one(GenerationStatus).show(f"loading {self.model.name}…")
        self._generate()

    @work(thread=True, exit_on_error=False)
    def _generate(self) -> None:
        worker = get_current_worker()
        run_in_fresh_thread(lambda: self._write(lambda: worker.is_cancelled))

    def _write(self, cancelled: Callable[[], bool]) -> None:
        try:
            model, tokenizer = ModelCache().get(self.model)
            for piece in saga_model.stream_story(model, tokenizer, self.request, self.options):
                if cancelled():
                    return
                self.post_message(self.Piece(piece))
        except SagaError as exc:
            self.post_message(self.Failed(str(exc)))

    def on_inline_story_app_piece(self, message: Piece) -> None:
        """Show the piece; the last one ends the app."""
        piece = message.piece
        view = self.query_one(StoryView)
        view.append(piece.text)
        state = "writing" if piece.finish_reason is None else "done"
        self.query_one(GenerationStatus).show(f"{state} · seed {self.options.seed} · escape "
                                              "stops", piece.n_tokens, piece.tokens_per_sec)
        if piece.finish_reason is not None:
            self.exit(view.text)

    def on_inline_story_app_failed(self, message: Failed) -> None:
        """Stop with the error (the command prints it)."""
        self.error = message.error
        self.exit(self.query_one(StoryView).text)

    def action_stop(self) -> None:
        """Stop writing; what was written is kept."""
        self.workers.cancel_all()
        self.exit(self.query_one(StoryView).text)
