"""The Story screen: settings on the left, the story streaming in on the right."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, Footer, Input, Select
from textual.worker import Worker, WorkerState, get_current_worker

from saga_model import SagaError, SamplingOptions, StoryPiece, StoryRequest, stream_story

from ..export import export_story
from ..library import LibraryError, SavedStory, suggest_title
from ..models import ModelChoice, discover_models, model_label, pick_model
from ..paths import exports_dir, runs_dir
from ..prefs import StorySettings
from ..threads import run_in_fresh_thread
from ..widgets.generation_status import GenerationStatus
from ..widgets.nav_bar import NavBar
from ..widgets.story_settings import FormError, StorySettingsForm
from ..widgets.story_view import StoryView
from .base import GrainScreen
from .export import ExportChoice, ExportDialog
from .prompt import PromptDialog

NO_MODEL = ("[b]No trained model yet.[/b]\n\n"
            "Grain de Saga needs a story model to write with. Press [b]F3[/b] to open the "
            "Training screen and train one on a folder of stories (the [i]tiny[/i] size "
            "trains in about a minute), or load a model folder with [b]ctrl+p[/b] → "
            "[i]Load model from a folder[/i].")
READY = ("Choose the settings on the left, then press [b]ctrl+g[/b] (or [b]enter[/b] in a "
         "field) to write a story. [b]escape[/b] stops it, [b]ctrl+r[/b] writes another.")
MAX_SEED = 999_999  # short enough to read off the status line and type back


@dataclass
class StoryJob:
    """One generation: what to write, how, and with which model."""

    request: StoryRequest
    options: SamplingOptions
    model_path: Path
    model_label: str


class StoryScreen(GrainScreen):
    """Write stories with the chosen model and settings."""

    CSS_PATH = "story.tcss"
    PALETTE_GROUP = "Story"
    EXTRA_COMMANDS = (("Load model from a folder…",
                       "Use a model folder, checkpoint or training run from anywhere",
                       "load_model"),)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+g", "generate", "Generate", tooltip="Write a story with these settings",
                priority=True),
        Binding("escape", "stop", "Stop", tooltip="Stop the story being written"),
        Binding("ctrl+r", "regenerate", "Again",
                tooltip="Write another story with the last settings and a new seed",
                priority=True),
        Binding("ctrl+s", "save", "Save", tooltip="Save the story in the library", priority=True),
        Binding("ctrl+o", "export", "Export", tooltip="Write the story to a Markdown or text file",
                priority=True),
        Binding("ctrl+y", "copy", "Copy", tooltip="Copy the story to the clipboard",
                priority=True),
    ]

    class Piece(Message):
        """A piece of text from the generation worker."""

        def __init__(self, run_id: int, piece: StoryPiece) -> None:
            super().__init__()
            self.run_id = run_id
            self.piece = piece

    class Failed(Message):
        """The worker could not load the model or generate."""

        def __init__(self, run_id: int, error: str) -> None:
            super().__init__()
            self.run_id = run_id
            self.error = error

    class ModelReady(Message):
        """The worker loaded the model."""

        def __init__(self, run_id: int) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self) -> None:
        super().__init__()
        self._run_id = 0
        self._generating = False
        self._job: StoryJob | None = None
        self._choices: list[ModelChoice] = []
        self._last_piece: StoryPiece | None = None

    def compose(self) -> ComposeResult:
        """Navigation, settings pane, story pane, footer."""
        choices, model = pick_model(discover_models(runs_dir()), self.grain.prefs.model)
        self._choices = choices
        yield NavBar("story")
        with Horizontal(id="story-body"):
            with Vertical(id="settings-pane") as pane:
                pane.border_title = "Settings"
                yield StorySettingsForm(self.grain.prefs.story, choices, model)
            with Vertical(id="story-pane") as pane:
                pane.border_title = "Story"
                yield StoryView(id="story-view")
                yield Button("Train a model (F3)", id="train-button", variant="primary")
                yield GenerationStatus(id="generation-status")
        yield Footer()

    @property
    def form(self) -> StorySettingsForm:
        """The settings form."""
        return self.query_one(StorySettingsForm)

    @property
    def view(self) -> StoryView:
        """The story pane."""
        return self.query_one("#story-view", StoryView)

    @property
    def status(self) -> GenerationStatus:
        """The status line."""
        return self.query_one("#generation-status", GenerationStatus)

    def on_mount(self) -> None:
        """Show the first-run message or load the chosen model in the background."""
        self._model_changed(announce=True)

    def on_screen_resume(self) -> None:
        """Coming back from another screen: a training run may have produced a model."""
        choices, model = pick_model(discover_models(runs_dir()),
                                    str(self.form.model_path() or self.grain.prefs.model))
        if choices != self._choices:
            had_model = bool(self._choices)
            self._choices = choices
            with self.prevent(Select.Changed):
                self.form.set_models(choices, model)
            if not had_model:
                self._model_changed(announce=False)

    # -- model -------------------------------------------------------------------------------

    def _model_changed(self, announce: bool) -> None:
        """Show the no-model hint, or start loading the chosen model."""
        path = self.form.model_path()
        self.query_one("#train-button", Button).display = path is None
        if self._generating:
            return
        if path is None:
            self.view.show_message(NO_MODEL)
            self.status.show("no model")
            if announce:
                self.notify("No trained model yet: press F3 to train one.",
                            title="Welcome to Grain de Saga", timeout=8)
            return
        self.view.show_message(READY)
        self.status.show(f"loading {model_label(path, self._choices)}…")
        self._run_id += 1
        self._preload(self._run_id, path)

    @work(thread=True, exclusive=True, group="story", exit_on_error=False)
    def _preload(self, run_id: int, path: Path) -> None:
        """Load a model so that the first story starts at once."""
        try:
            run_in_fresh_thread(lambda: self.grain.models.get(path))
        except SagaError as exc:
            self.post_message(self.Failed(run_id, f"Could not load the model: {exc}"))
            return
        self.post_message(self.ModelReady(run_id))

    @on(Select.Changed, "#model")
    def _on_model_selected(self, event: Select.Changed) -> None:
        path = self.form.model_path()
        self.grain.prefs.model = str(path) if path else ""
        self.grain.save_prefs()
        self._model_changed(announce=False)

    def on_story_screen_model_ready(self, message: ModelReady) -> None:
        """The model is loaded: say so."""
        if message.run_id == self._run_id:
            path = self.form.model_path()
            self.status.show(f"ready · {model_label(path, self._choices)}" if path else "ready")

    def use_model_folder(self, folder: str | None) -> None:
        """Add a model folder typed by the user to the picker and select it."""
        if not folder:
            return
        choices, model = pick_model(self._choices, folder)
        if model is None or str(model) != str(Path(folder).expanduser()):
            self.notify(f"No model found in {folder} (expected model.safetensors).",
                        severity="error")
            return
        self._choices = choices
        self.form.set_models(choices, model)  # posts Select.Changed, which loads it

    def action_load_model(self) -> None:
        """Ask for a model folder (a training run, a checkpoint or a model folder)."""
        self.app.push_screen(PromptDialog("Load a model from a folder",
                                          placeholder="~/path/to/run-or-model"),
                             self.use_model_folder)

    # -- generation --------------------------------------------------------------------------

    def _job_from_form(self) -> StoryJob | None:
        """Validate the form into a job; tell the user what is wrong otherwise."""
        try:
            settings = self.form.read()
        except FormError as exc:
            self.notify(str(exc), severity="error")
            self.form.query_one(f"#{exc.field_id}").focus()
            return None
        self.grain.prefs.story = settings
        self.grain.save_prefs()
        path = self.form.model_path()
        if path is None:
            self.notify("There is no model to write with yet: press F3 to train one.",
                        severity="warning")
            return None
        try:
            request = StoryRequest.create(theme=settings.theme or None,
                                          tone=settings.tone or None,
                                          genre=settings.genre or None,
                                          characters=settings.characters,
                                          opening=settings.opening)
            options = self._options(settings)
        except SagaError as exc:
            self.notify(str(exc), severity="error")
            return None
        return StoryJob(request, options, path, model_label(path, self._choices))

    @staticmethod
    def _options(settings: StorySettings) -> SamplingOptions:
        """Sampling options; a random seed is drawn here so every story can be reproduced."""
        seed = settings.seed if settings.seed is not None else random.randint(0, MAX_SEED)
        return SamplingOptions(temperature=settings.temperature, top_p=settings.top_p,
                               max_tokens=settings.max_tokens, seed=seed)

    def action_generate(self) -> None:
        """Write a new story with the form's settings (cancelling one being written)."""
        job = self._job_from_form()
        if job is not None:
            self._start(job)

    def action_regenerate(self) -> None:
        """Write another story with the last settings and a new random seed."""
        if self._job is None:
            self.action_generate()
            return
        options = replace(self._job.options, seed=random.randint(0, MAX_SEED))
        self._start(replace(self._job, options=options))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in any field of the form generates."""
        event.stop()
        self.action_generate()

    def _start(self, job: StoryJob) -> None:
        self._run_id += 1
        self._job = job
        self._set_generating(True)
        self._last_piece = None
        self.view.clear()
        self.status.show("writing", 0)
        self.query_one("#story-pane").border_subtitle = f"seed {job.options.seed}"
        self._generate(self._run_id, job)

    @work(thread=True, exclusive=True, group="story", exit_on_error=False)
    def _generate(self, run_id: int, job: StoryJob) -> None:
        """Stream the story in a thread; each piece goes to the UI as a message."""
        worker = get_current_worker()
        run_in_fresh_thread(lambda: self._write(run_id, job, lambda: worker.is_cancelled))

    def _write(self, run_id: int, job: StoryJob, cancelled: Callable[[], bool]) -> None:
        """Load the model (if needed) and post the story piece by piece until cancelled."""
        try:
            model, tokenizer = self.grain.models.get(job.model_path)
        except SagaError as exc:
            self.post_message(self.Failed(run_id, f"Could not load the model: {exc}"))
            return
        try:
            for piece in stream_story(model, tokenizer, job.request, job.options):
                if cancelled():
                    return
                self.post_message(self.Piece(run_id, piece))
        except SagaError as exc:
            self.post_message(self.Failed(run_id, str(exc)))

    def on_story_screen_piece(self, message: Piece) -> None:
        """Show a new piece (pieces of a cancelled story are dropped)."""
        if message.run_id != self._run_id or self._job is None:
            return
        piece = self._last_piece = message.piece
        self.view.append(piece.text)
        if piece.finish_reason is None:
            state = "writing"
        else:
            self._set_generating(False)
            state = "done" if piece.finish_reason == "end" else "max length"
        self.status.show(state, piece.n_tokens, piece.tokens_per_sec)

    def on_story_screen_failed(self, message: Failed) -> None:
        """Show why nothing (more) can be written."""
        if message.run_id != self._run_id:
            return
        self._set_generating(False)
        self.status.show("error")
        if not self.view.text:  # a story already on screen stays there
            self.view.show_message(f"[b $error]{escape(message.error)}[/]\n\nChoose another "
                                   "model in the picker, or train one with F3.")
        self.notify(message.error, severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An unexpected error in a worker is reported, never a crash."""
        if event.state == WorkerState.ERROR and event.worker.group == "story":
            self.post_message(self.Failed(self._run_id, f"Story generation failed: "
                                                        f"{event.worker.error!r}"))

    def action_stop(self) -> None:
        """Stop the story being written; what was written stays."""
        if not self._generating:
            return
        self._run_id += 1
        self._set_generating(False)
        self.workers.cancel_group(self, "story")
        piece = self._last_piece
        self.status.show("stopped", piece.n_tokens if piece else 0,
                         piece.tokens_per_sec if piece else None)

    def _set_generating(self, generating: bool) -> None:
        """Note whether a story is being written (and update which keys are active)."""
        self._generating = generating
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that would do nothing right now are shown dimmed in the footer."""
        if action == "stop":
            return self._generating or None
        if action in ("save", "export", "copy"):
            return (not self._generating and bool(self.view.text.strip())) or None
        return True

    # -- keeping stories ---------------------------------------------------------------------

    def _story(self, title: str) -> SavedStory | None:
        """The story on screen with its settings, ``None`` if there is none."""
        if self._job is None or not self.view.text.strip():
            return None
        request, options = self._job.request, self._job.options
        return SavedStory(
            title=title, text=self.view.text.strip(), theme=request.theme or "",
            tone=request.tone or "", genre=request.genre or "",
            characters=", ".join(request.characters), opening=request.opening,
            model=self._job.model_label,
            sampling={"temperature": options.temperature, "top_p": options.top_p,
                      "max_tokens": options.max_tokens, "seed": options.seed},
        )

    def _keepable(self) -> bool:
        """Whether there is a finished (or stopped) story to save, export or copy."""
        if self._generating:
            self.notify("The story is still being written: wait for it or press escape.",
                        severity="warning")
            return False
        if self._job is None or not self.view.text.strip():
            self.notify("There is no story to keep yet: press ctrl+g to write one.",
                        severity="warning")
            return False
        return True

    def action_save(self) -> None:
        """Save the story in the library under a title the user confirms."""
        if self._keepable():
            self.app.push_screen(PromptDialog("Save in the library as",
                                              suggest_title(self.view.text)), self._save)

    def _save(self, title: str | None) -> None:
        story = self._story(title) if title else None
        if story is None:
            return
        try:
            self.grain.library.add(story)
        except LibraryError as exc:
            self.notify(f"{exc} Your story is still here: export it with ctrl+o.",
                        severity="error", timeout=15)
            return
        self.notify(f"Saved “{title}” in the library (F4).")

    def action_export(self) -> None:
        """Write the story to a Markdown or plain-text file."""
        if self._keepable():
            self.app.push_screen(ExportDialog(exports_dir()), self._export)

    def _export(self, choice: ExportChoice | None) -> None:
        story = self._story(suggest_title(self.view.text)) if choice else None
        if story is None or choice is None:
            return
        try:
            path = export_story(story, choice.folder, choice.fmt)
        except OSError as exc:
            self.notify(f"Could not export: {exc}", severity="error", timeout=10)
            return
        self.notify(f"Exported to {path}")

    def action_copy(self) -> None:
        """Copy the story to the clipboard (through the terminal)."""
        if self._keepable():
            self.app.copy_to_clipboard(self.view.text.strip())
            self.notify("Story copied to the clipboard (if your terminal allows it).")

    @on(Button.Pressed, "#train-button")
    def _open_training(self) -> None:
        self.app.switch_mode("training")
