"""``grain-tui --inline``: one story written under the shell prompt, then back to the shell.

A small Textual app in inline mode shows the story as it streams (its last lines) and a
status line; when the story is done (or escape / ctrl+c stops it) the app clears itself and
the command prints the whole story to standard output, where it stays in the scrollback.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import get_current_worker

from saga_model import SagaError

from .pacing import FramePacer
from .session import StoryJob, StorySession, StoryUpdate
from .widgets.generation_status import GenerationStatus
from .widgets.story_view import StoryView


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

        def __init__(self, update: StoryUpdate) -> None:
            super().__init__()
            self.update = update

    class Failed(Message):
        """The worker could not load the model or generate."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, job: StoryJob) -> None:
        super().__init__()
        self.job = job
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        """The story and a status line."""
        yield StoryView(id="story-view")
        yield GenerationStatus(id="generation-status")

    def on_mount(self) -> None:
        """Start writing."""
        self.query_one(GenerationStatus).show(f"loading {self.job.model_label}…")
        self._write()

    @work(thread=True, exit_on_error=False)
    def _write(self) -> None:
        """Have a story session write the story; each piece comes to the UI as a message."""
        worker = get_current_worker()
        try:
            StorySession().tell(self.job,
                                FramePacer(lambda update: self.post_message(self.Piece(update))),
                                lambda: worker.is_cancelled)
        except SagaError as exc:
            self.post_message(self.Failed(str(exc)))

    def on_inline_story_app_piece(self, message: Piece) -> None:
        """Show the piece; the last one ends the app."""
        piece = message.update
        view = self.query_one(StoryView)
        view.append(piece.text)
        state = "writing" if piece.finish_reason is None else "done"
        self.query_one(GenerationStatus).show(f"{state} · seed {self.job.options.seed} · escape "
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
