"""The Story screen: settings on the left, the story streaming in on the right.

Besides writing new stories it tells saved ones again (same model, settings and seed: the
same story), grows new versions of a story (continue from its end, or branch after any
sentence), reads stories aloud sentence by sentence as they appear, and in bedtime mode lets
the text out at reading speed instead of as fast as the model writes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Input, Select
from textual.worker import Worker, WorkerState

from saga_model import SagaError

from ..library import LibraryError, SavedStory, suggest_title
from ..models import ModelChoice, discover_models, model_label, pick_model
from ..pacing import FramePacer
from ..paths import exports_dir, runs_dir
from ..reveal import WordReveal
from ..session import (
    StoryJob,
    StoryUpdate,
    branch,
    continuation,
    draw_seed,
    job_from_saved,
    saved_story,
    story_from_settings,
)
from ..speech import NO_ENGINE, SentenceSplitter
from ..widgets.generation_status import GenerationStatus
from ..widgets.key_footer import KeyFooter
from ..widgets.nav_bar import NavBar
from ..widgets.story_settings import FormError, StorySettingsForm
from ..widgets.story_view import StoryView
from .base import GrainScreen
from .branch import BranchDialog
from .export import ExportChoice, ExportDialog
from .prompt import PromptDialog

#: A new story's first token usually comes within a few hundredths of a second: the pane is
#: emptied in the frame that shows it (one frame instead of two while the model starts), or
#: after this long if it is slower.
CLEAR_WITHIN_SECONDS = 0.1
#: The seed under the pane and the footer's keys (stop, not save) follow a new story once it
#: took this long, else when it ends: for a story told in a blink they would just flicker, and
#: redrawing the pane's border and restyling the keys is work that the model's thread waits for.
DETAILS_AFTER_SECONDS = 1.0


class StoryScreen(GrainScreen):
    """Write stories with the chosen model and settings."""

    CSS_PATH = "story.tcss"
    PALETTE_GROUP = "Story"
    EXTRA_COMMANDS = (("Load model from a folder…",
                       "Use a model folder, checkpoint or training run from anywhere",
                       "load_model"),)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+g", "generate", "Generate", tooltip="Write a story with these settings",
                priority=True, id="generate"),
        Binding("escape", "stop", "Stop",
                tooltip="Stop the story being written, and the reading aloud", id="stop"),
        Binding("ctrl+r", "regenerate", "Again",
                tooltip="Write another story with the last settings and a new seed",
                priority=True, id="again"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the story in the library", priority=True,
                id="save"),
        Binding("ctrl+n", "continue", "Continue",
                tooltip="Write what happens next (a new version of the story)", priority=True,
                id="continue"),
        Binding("f6", "branch", "Branch",
                tooltip="Write a new version of the story from one of its sentences",
                priority=True, id="branch"),
        Binding("ctrl+l", "read_aloud", "Read aloud",
                tooltip="Read stories aloud as they appear (on / off)", priority=True,
                id="read-aloud"),
        Binding("ctrl+o", "export", "Export",
                tooltip="Write the story to a Markdown, text, HTML or audio file",
                priority=True, show=False, id="export"),
        Binding("ctrl+y", "copy", "Copy", tooltip="Copy the story to the clipboard",
                priority=True, show=False, id="copy"),
    ]

    class Piece(Message):
        """A piece of the story from the writing worker."""

        def __init__(self, run_id: int, update: StoryUpdate) -> None:
            super().__init__()
            self.run_id = run_id
            self.update = update

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
        self._telling = False  # the story is still coming: being written or (bedtime) let out
        self._job: StoryJob | None = None
        self._choices: list[ModelChoice] = []
        self._last_piece: StoryUpdate | None = None
        self._written: StoryUpdate | None = None  # the model finished with this piece
        self._model_id = ""
        self._saved: SavedStory | None = None  # the library story on screen, if it is one
        self._reveal: WordReveal | None = None
        self._reveal_timer: Timer | None = None
        self._sentences: SentenceSplitter | None = None  # reading aloud as text appears
        self._ready_shown = False  # the "how to start" hint is on screen
        self._clear_timer: Timer | None = None  # a new story's pane is still to be emptied
        self._details_timer: Timer | None = None  # the seed and keys still show the last story

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
        yield KeyFooter(compact=True, show_command_palette=False)  # ^p is on the top line

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

    # -- messages that name keys (the user may have remapped them) ----------------------------

    def _no_model_text(self) -> str:
        return ("[b]No trained model yet.[/b]\n\n"
                f"Grain de Saga needs a story model to write with. Press [b]"
                f"{self.key('show-training')}[/b] to open the Training screen and train one on "
                "a folder of stories (the [i]tiny[/i] size, a smoke test, took 2½ minutes for "
                "600 steps on 2 CPU cores), or load "
                "a model folder with [b]ctrl+p[/b] → [i]Load model from a folder[/i].")

    def _ready_text(self) -> str:
        choose = (f"The settings are hidden in bedtime mode ([b]{self.key('bedtime')}[/b] "
                  "shows them): press" if self.grain.bedtime else
                  "Choose the settings on the left, then press")
        return (f"{choose} [b]{self.key('generate')}[/b] (or [b]enter[/b] in a field) to write "
                f"a story. [b]{self.key('stop')}[/b] stops it, [b]{self.key('again')}[/b] "
                "writes another.")

    def _show_ready(self) -> None:
        self.view.show_message(self._ready_text())
        self._ready_shown = True

    def bedtime_changed(self) -> None:
        """Bedtime mode went on or off: the settings pane hides or comes back."""
        if self.grain.bedtime:
            self.view.focus()
        if self._ready_shown:
            self._show_ready()

    # -- model -------------------------------------------------------------------------------

    def _model_changed(self, announce: bool) -> None:
        """Show the no-model hint, or start loading the chosen model."""
        path = self.form.model_path()
        self.query_one("#train-button", Button).display = path is None
        if self._telling:
            return
        if path is None:
            self._ready_shown = False
            self.view.show_message(self._no_model_text())
            self.status.show("no model")
            if announce:
                self.notify(f"No trained model yet: press {self.key('show-training')} to train "
                            "one.", title="Welcome to Grain de Saga", timeout=8)
            return
        if not self.view.text:  # a story on screen stays (the next one uses this model)
            self._show_ready()
        self.status.show(f"loading {model_label(path, self._choices)}…")
        self._run_id += 1
        # After the first frame: importing MLX in a thread would hold the GIL while it paints.
        self.call_after_refresh(self._start_preload, self._run_id, path)

    def _start_preload(self, run_id: int, path: Path) -> None:
        if run_id == self._run_id:  # not if a story (or another model) came first
            self._preload(run_id, path)

    @work(thread=True, exclusive=True, group="story", exit_on_error=False)
    def _preload(self, run_id: int, path: Path) -> None:
        """Load a model (and its fingerprint) so that the first story starts at once."""
        try:
            self.grain.session.preload(path)
        except SagaError as exc:
            self.post_message(self.Failed(run_id, str(exc)))
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
        """Validate the form into a job (the form's values become the preferences, saved once
        the story is under way, so that writing the file does not hold up its first token);
        tell the user what is wrong otherwise."""
        try:
            settings = self.form.read()
        except FormError as exc:
            self.notify(str(exc), severity="error")
            self.form.query_one(f"#{exc.field_id}").focus()
            return None
        self.grain.prefs.story = settings
        self.call_after_refresh(self.grain.save_prefs)
        path = self.form.model_path()
        if path is None:
            self.notify(f"There is no model to write with yet: press "
                        f"{self.key('show-training')} to train one.", severity="warning")
            return None
        try:
            request, options = story_from_settings(settings)
        except SagaError as exc:
            self.notify(str(exc), severity="error")
            return None
        return StoryJob(request, options, path, model_label(path, self._choices))

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
        options = replace(self._job.options, seed=draw_seed())
        self._start(replace(self._job, options=options))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in any field of the form generates."""
        event.stop()
        self.action_generate()

    def tell_saved(self, story: SavedStory, how: str, end: int | None = None) -> None:
        """Tell a library story ``again`` (its model, settings and seed: the same story), or
        write a new version of it: ``continue`` from its end, or ``branch`` after the
        sentence that ends at ``end``."""
        path, same_model = self.grain.session.model_for(story, self._choices,
                                                        self.form.model_path())
        if path is None:
            self.notify("There is no model to tell it with.", severity="warning")
            return
        label = model_label(path, self._choices)
        try:
            job = job_from_saved(story, path, label, how, end)
        except SagaError as exc:
            self.notify(str(exc), severity="error")
            return
        if how == "again" and not same_model:
            self.notify(f"The model that wrote “{story.title}” is gone or has changed: "
                        f"telling it with {label}, so it will come out differently.",
                        severity="warning", timeout=10)
        self._start(job, saved=story if how == "again" else None)

    def _start(self, job: StoryJob, saved: SavedStory | None = None) -> None:
        self._run_id += 1
        self._job = job
        self._saved = saved
        self._ready_shown = False
        self._last_piece = self._written = None
        self._stop_reveal()
        if self.grain.bedtime:
            self._reveal = WordReveal()
            self._reveal_timer = self.set_interval(
                60 / self.grain.prefs.bedtime.words_per_minute, self._reveal_tick)
        self.grain.stop_speaking()
        self._sentences = self._reader()
        self._write(self._run_id, job)  # first: the model starts before the screen is redrawn
        self._telling = True
        for timer in (self._clear_timer, self._details_timer):
            if timer is not None:
                timer.stop()
        self._clear_timer = self.set_timer(CLEAR_WITHIN_SECONDS, self._show_new_story)
        self._details_timer = self.set_timer(DETAILS_AFTER_SECONDS, self._show_details)

    def _show_new_story(self) -> None:
        """Empty the pane for the story being started (once, with its first piece or after
        CLEAR_WITHIN_SECONDS)."""
        if self._clear_timer is None:
            return
        self._clear_timer.stop()
        self._clear_timer = None
        self.view.clear()
        self.status.show("writing", 0)

    def _show_details(self) -> None:
        """The seed under the pane and the keys that work now in the footer."""
        if self._details_timer is not None:
            self._details_timer.stop()
            self._details_timer = None
        self._show_subtitle()
        self.refresh_bindings()

    def _write(self, run_id: int, job: StoryJob) -> None:
        """Have the session write the story in the model's thread; the pieces come back as
        messages, at most one per frame. It stops at the next piece once another story starts,
        the story is stopped or the screen is gone."""
        self.grain.session.start_telling(
            job, FramePacer(lambda update: self.post_message(self.Piece(run_id, update))),
            lambda: run_id != self._run_id or not self.is_running,
            lambda error: self.post_message(self.Failed(run_id, error)))

    def on_story_screen_piece(self, message: Piece) -> None:
        """Show a new piece, or hold it back for bedtime (pieces of a cancelled story are
        dropped)."""
        if message.run_id != self._run_id or self._job is None:
            return
        self._show_new_story()
        piece = self._last_piece = message.update
        self._model_id = piece.model_id
        if self._reveal is not None:
            self._reveal.push(piece.text)
        else:
            self._show_text(piece.text)
        if piece.finish_reason is None:
            self.status.show("writing", piece.n_tokens, self._speed(piece))
            return
        self._written = piece
        if self._reveal is None:
            self._finish()
            self._paint_now()
        else:
            self.status.show("telling", piece.n_tokens, self._speed(piece))

    def _paint_now(self) -> None:
        """Paint the story pane and the status line in a frame now, not at the screen's next
        update: the pacer already spaces a story's updates, and Textual lets a frame follow
        another only at its next 60 fps tick after one to two periods (the frame with a
        story's end came 10-30 ms after its last piece, often following the pacer's last
        frame). Uses Textual's private frame: the one its Pilot paints with."""
        self._dirty_widgets.update((self.view, self.view.vertical_scrollbar, self.status))
        self._on_timer_update()

    def _speed(self, piece: StoryUpdate) -> float:
        """The tokens/s to show: a story that goes on from an opening (a continuation, a
        branch) leaves out the time spent reading that opening in."""
        if self._job is not None and self._job.request.opening:
            return piece.writing_tokens_per_sec
        return piece.tokens_per_sec

    def _reveal_tick(self) -> None:
        """Bedtime: let the next word out (all that waits, if bedtime was switched off)."""
        if self._reveal is None:
            return
        complete = self._written is not None
        text = self._reveal.next_word(complete) if self.grain.bedtime else \
            self._reveal.take_all()
        if text:
            self._show_text(text)
        if complete and not self._reveal.pending:
            self._finish()

    def _stop_reveal(self) -> None:
        if self._reveal_timer is not None:
            self._reveal_timer.stop()
        self._reveal_timer = None
        self._reveal = None

    def _show_text(self, text: str) -> None:
        """Add text to the story on screen (and read out the sentences it completes)."""
        self.view.append(text)
        if self._sentences is not None:
            self.grain.speak(self._sentences.feed(text))

    def _finish(self) -> None:
        """The whole story is on screen."""
        piece = self._written
        self._stop_reveal()
        self._stop_telling()
        if self._sentences is not None:
            self.grain.speak(self._sentences.flush())
        if piece is not None:
            state = "done" if piece.finish_reason == "end" else "max length"
            self.status.show(state, piece.n_tokens, self._speed(piece))

    def on_story_screen_failed(self, message: Failed) -> None:
        """Show why nothing (more) can be written."""
        if message.run_id != self._run_id:
            return
        self._show_new_story()
        self._stop_reveal()
        self._stop_telling()
        self.status.show("error")
        if not self.view.text:  # a story already on screen stays there
            self._ready_shown = False
            self.view.show_message(f"[b $error]{escape(message.error)}[/]\n\nChoose another "
                                   "model in the picker, or train one with "
                                   f"{escape(self.key('show-training'))}.")
        self.notify(message.error, severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An unexpected error in a worker is reported, never a crash."""
        if event.state == WorkerState.ERROR and event.worker.group == "story":
            self.post_message(self.Failed(self._run_id, f"Story generation failed: "
                                                        f"{event.worker.error!r}"))

    def action_stop(self) -> None:
        """Stop the story being written (what was written stays) and the reading aloud."""
        self._sentences = None
        self.grain.stop_speaking()
        if not self._telling:
            return
        self._show_new_story()
        self._run_id += 1
        self._stop_reveal()
        self._stop_telling()
        piece = self._last_piece
        self.status.show("stopped", piece.n_tokens if piece else 0,
                         self._speed(piece) if piece else None)

    def _stop_telling(self) -> None:
        """No story is coming any more: the seed and the footer's keys follow (after the frame
        that shows the story's end)."""
        self._telling = False
        if self._details_timer is not None:
            self._details_timer.stop()
            self._details_timer = None
        self.call_after_refresh(self._show_details)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that would do nothing right now are shown dimmed in the footer."""
        if action == "stop":
            return self._telling or self.grain.speaking or None
        if action in ("save", "export", "copy", "continue", "branch"):
            return (not self._telling and bool(self.view.text.strip())) or None
        return True

    # -- reading aloud -----------------------------------------------------------------------

    def _reader(self) -> SentenceSplitter | None:
        """A sentence splitter if stories are read aloud (and a speech engine is there)."""
        speech = self.grain.prefs.speech
        if not speech.enabled:
            return None
        if self.grain.speaker() is None:
            speech.enabled = False
            self.grain.save_prefs()
            self.notify(f"Read aloud is now off. {NO_ENGINE}", severity="error", timeout=15)
            return None
        return SentenceSplitter()

    def action_read_aloud(self) -> None:
        """Switch reading aloud on (from the start of the story on screen) or off."""
        self._show_new_story()  # not the story before a new one
        speech = self.grain.prefs.speech
        if speech.enabled:
            speech.enabled = False
            self._sentences = None
            self.grain.stop_speaking()
            self.notify("Read aloud is off.")
        elif self.grain.speaker() is None:
            self.notify(NO_ENGINE, severity="error", timeout=15)
            return
        else:
            speech.enabled = True
            self._sentences = SentenceSplitter()
            self.grain.stop_speaking()
            self.grain.speak(self._sentences.feed(self.view.text))
            if not self._telling:
                self.grain.speak(self._sentences.flush())
            self.notify(f"Read aloud is on: stories are read sentence by sentence as they "
                        f"appear. {self.key('stop')} stops, {self.key('read-aloud')} switches "
                        "it off.")
        self.grain.save_prefs()
        self._show_subtitle()

    def _show_subtitle(self) -> None:
        """The story pane's lower border: the seed, and whether stories are read aloud."""
        parts = [f"seed {self._job.options.seed}"] if self._job is not None else []
        if self.grain.prefs.speech.enabled:
            parts.append("read aloud")
        self.query_one("#story-pane").border_subtitle = " · ".join(parts)

    # -- keeping stories and growing new versions ----------------------------------------------

    def _story(self, title: str) -> SavedStory | None:
        """The story on screen with its settings, ``None`` if there is none."""
        if self._job is None or not self.view.text.strip():
            return None
        return saved_story(self._job, self.view.text.strip(), title, self._model_id)

    def _title(self) -> str:
        """The title of the story on screen (its library title, else one from its text)."""
        if self._saved is not None:
            return self._saved.title
        if self._job is not None and self._job.title:
            return self._job.title
        return suggest_title(self.view.text)

    def _keepable(self) -> bool:
        """Whether there is a finished (or stopped) story to save, export, copy or grow."""
        if self._telling:
            self.notify(f"The story is still being written: wait for it or press "
                        f"{self.key('stop')}.", severity="warning")
            return False
        if self._job is None or not self.view.text.strip():
            self.notify(f"There is no story yet: press {self.key('generate')} to write one.",
                        severity="warning")
            return False
        return True

    def action_save(self) -> None:
        """Save the story in the library under a title the user confirms (not again when the
        library already holds it: saved before, told again, or a version that added nothing)."""
        if not self._keepable():
            return
        same = self._same_in_library()
        if same is not None:
            self.notify(f"“{same.title}” is already in the library with this very text "
                        f"({self.key('show-library')}).", severity="warning")
            return
        self.app.push_screen(PromptDialog("Save in the library as", self._title()), self._save)

    def _same_in_library(self) -> SavedStory | None:
        """The library story with the text on screen, among the one saved (or told again) and
        the one this is a version of."""
        text = self.view.text.strip()
        ids = {story_id for story_id in (self._saved.id if self._saved else None,
                                         self._job.parent_id if self._job else None) if story_id}
        for story_id in ids:
            try:
                story = self.grain.library.get(story_id)
            except LibraryError:
                return None
            if story is not None and story.text.strip() == text:
                return story
        return None

    def _save(self, title: str | None) -> None:
        story = self._story(title) if title else None
        if story is None:
            return
        try:
            self.grain.library.add(story)
        except LibraryError as exc:
            self.notify(f"{exc} Your story is still here: export it with {self.key('export')}.",
                        severity="error", timeout=15)
            return
        self._saved = story
        self.notify(f"Saved “{title}” in the library ({self.key('show-library')}).")

    def action_export(self) -> None:
        """Write the story to a Markdown, text, HTML or audio file."""
        if self._keepable():
            self.app.push_screen(ExportDialog(exports_dir(), self.grain.prefs.export_format),
                                 self._export)

    def _export(self, choice: ExportChoice | None) -> None:
        story = self._story(self._title())
        if story is not None and choice is not None:
            self.grain.export(story, choice)

    def action_copy(self) -> None:
        """Copy the story to the clipboard (through the terminal, and locally if possible)."""
        if self._keepable():
            self.grain.copy_text(self.view.text.strip(), "Story")

    def action_continue(self) -> None:
        """Write what happens next: a new version that goes on from the end of this one."""
        if self._keepable() and self._job is not None:
            job = self._job
            self._start(continuation(job, self.view.text, self._parent_id(job), self._title()))

    def action_branch(self) -> None:
        """Choose a sentence, then write a new version that goes on from there."""
        if not self._keepable() or self._job is None:
            return
        job, text = self._job, self.view.text.strip()

        def branch_at(end: int | None) -> None:
            if end is not None:
                self._start(branch(job, text, end, self._parent_id(job), self._title()))

        self.app.push_screen(BranchDialog(self._title(), text), branch_at)

    def _parent_id(self, job: StoryJob) -> int | None:
        """The story a new version of the one on screen grows from: the one on screen once
        it is saved, else the story it came from."""
        return self._saved.id if self._saved is not None else job.parent_id

    @on(Button.Pressed, "#train-button")
    def _open_training(self) -> None:
        self.app.switch_mode("training")
