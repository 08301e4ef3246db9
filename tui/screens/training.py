"""The Training screen: start, pause and resume runs, and follow one live.

The trainer is a separate process (see :mod:`tui.runs`); this screen only reads the run's
``metrics.jsonl`` every half second, so it can attach to a run started by an earlier
``grain-tui`` and the run goes on when the app or the SSH session closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Select

from saga_model import EvalMetrics, MetricsReader

from ..metrics import RunProgress, run_state
from ..models import discover_models
from ..paths import runs_dir
from ..runs import (
    RunError,
    TrainingRun,
    default_run_name,
    list_runs,
    parse_extra_flags,
    validate_run_name,
)
from ..widgets.key_footer import KeyFooter
from ..widgets.loss_chart import LossChart
from ..widgets.nav_bar import NavBar
from ..widgets.run_stats import RunStats
from ..widgets.story_settings import FormError
from ..widgets.story_view import StoryView
from ..widgets.training_form import TrainingForm
from .base import GrainScreen
from .confirm import ConfirmDialog
from .teach import TeachDialog, TeachRequest

POLL_SECONDS = 0.5
SAMPLE_TITLE = "Latest sample"
NO_RUN = ("No training run yet. Fill in the data folder (a .txt file or a folder of stories), "
          "pick a size and press ctrl+g to start; the time left shows once it runs. Measured "
          "on 2 CPU cores with the MKL that pip installs: tiny (a smoke test) took 2½ minutes "
          "for 600 steps; seed (the shipped model's shape) trains ~2,100 tokens/s.")


def _worth_following(run: TrainingRun) -> bool:
    """Every run but one that failed before its first checkpoint (nothing to see or resume)."""
    return run.is_running() or run.has_checkpoints() or run.failure() is None


class TrainingScreen(GrainScreen):
    """Train models and watch their loss, speed and sample stories."""

    CSS_PATH = "training.tcss"
    AUTO_FOCUS = "#data-dir"
    PALETTE_GROUP = "Training"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+g", "start", "Start", tooltip="Start a new training run", priority=True,
                id="start-training"),
        Binding("escape", "pause", "Pause",
                tooltip="Pause the followed run (it saves a checkpoint; resume later)",
                id="pause-training"),
        Binding("ctrl+r", "resume", "Resume",
                tooltip="Resume the followed run from its last checkpoint", priority=True,
                id="resume-training"),
        Binding("ctrl+o", "teach", "Teach",
                tooltip="Teach it your stories: fine-tune a model on a folder of your stories",
                priority=True, id="teach-stories"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[str, TrainingRun] = {}
        self._run: TrainingRun | None = None
        self._follower: MetricsReader | None = None
        self._progress = RunProgress()
        self._was_running = False
        self._can_pause = False
        self._can_resume = False

    def compose(self) -> ComposeResult:
        """Navigation, the form and buttons, the dashboard, footer."""
        runs = [run for run in list_runs(runs_dir()) if _worth_following(run)]
        self._runs = {run.name: run for run in runs}
        running = [run.name for run in runs if run.is_running()]
        names = running + [run.name for run in runs if run.name not in running]
        yield NavBar("training")
        with Horizontal(id="training-body"):
            with Vertical(id="training-form-pane") as pane:
                pane.border_title = "Run"
                yield TrainingForm(self.grain.prefs.training, names)
                with Horizontal(id="training-buttons"):
                    yield Button("Start", id="start", variant="primary", compact=True)
                    yield Button("Pause", id="pause", compact=True)
                    yield Button("Resume", id="resume", compact=True)
                yield Button("Teach it your stories", id="teach", compact=True)
            with Vertical(id="dashboard"):
                yield RunStats(id="run-stats")
                yield LossChart(id="loss-chart")
                sample = StoryView(id="sample-view")
                sample.border_title = SAMPLE_TITLE
                yield sample
        yield KeyFooter()

    @property
    def progress(self) -> RunProgress:
        """What is known of the followed run."""
        return self._progress

    @property
    def form(self) -> TrainingForm:
        """The form."""
        return self.query_one(TrainingForm)

    def on_mount(self) -> None:
        """Follow the running (else the most recent) run and poll its metrics."""
        self._follow(self.form.followed())
        self.set_interval(POLL_SECONDS, self._poll)

    # -- following a run ---------------------------------------------------------------------

    def _follow(self, name: str | None) -> None:
        """Show ``name``'s run from the beginning of its metrics."""
        self._run = self._runs.get(name) if name else None
        self._progress = RunProgress()
        self._follower = MetricsReader(self._run.metrics_file) if self._run else None
        self._was_running = self._run is not None and self._run.is_running()
        sample = self.query_one("#sample-view", StoryView)
        sample.border_title = SAMPLE_TITLE
        sample.show_message("No sample yet.")
        self.query_one(LossChart).show(self._progress)
        self._poll()
        if self._run is not None:
            self.form.show_run_settings(self._progress.total_steps)

    @on(Select.Changed, "#run-select")
    def _on_run_selected(self) -> None:
        self._follow(self.form.followed())

    def _poll(self) -> None:
        """Read new metrics, update the dashboard, notice when the trainer exits."""
        run, stats = self._run, self.query_one(RunStats)
        if run is None or self._follower is None:
            stats.show_message(NO_RUN)
            self._set_buttons(False, False)
            return
        events = self._follower.read_new()
        if self._progress.apply_all(events):
            self.query_one(LossChart).show(self._progress)
        if any(isinstance(e, EvalMetrics) and e.sample for e in events):
            sample = self.query_one("#sample-view", StoryView)
            sample.border_title = f"Sample at step {self._progress.sample_step}"
            sample.set_story((self._progress.sample or "").strip())
        running = run.is_running()
        stats.show(run_state(run, self._progress, running, self._follower.bad_lines).text,
                   self._progress)
        if self._was_running and not running:
            self._announce_exit(run)
        self._was_running = running
        self._set_buttons(running, not running and run.has_checkpoints())

    def _announce_exit(self, run: TrainingRun) -> None:
        """Tell the user how the trainer ended."""
        state = run_state(run, self._progress, running=False)
        if state.kind == "paused":
            self.notify(f"Run {run.name} paused at step {self._progress.step}: ctrl+r resumes.")
        elif state.kind == "finished":
            self.notify(f"Run {run.name} finished: its model is now in the Story screen's "
                        "picker (F2).", timeout=10)
        else:
            self.notify(state.failure or f"Run {run.name} stopped before it finished.",
                        title="Training failed", severity="error", timeout=20)
            if not _worth_following(run):
                self._unlist(run)

    def _unlist(self, run: TrainingRun) -> None:
        """Take a run that failed before its first checkpoint off the Follow list; its
        failure stays on screen until another run is chosen (and in its folder's train.log)."""
        self._runs.pop(run.name, None)
        with self.prevent(Select.Changed):
            self.form.set_runs(list(self._runs), None, unlisted=f"{run.name} (failed)")

    def _set_buttons(self, can_pause: bool, can_resume: bool) -> None:
        """Enable what makes sense now (buttons and footer keys)."""
        self.query_one("#pause", Button).disabled = not can_pause
        self.query_one("#resume", Button).disabled = not can_resume
        if (can_pause, can_resume) != (self._can_pause, self._can_resume):
            self._can_pause, self._can_resume = can_pause, can_resume
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and resume keys are shown dimmed when they would do nothing."""
        if action == "pause":
            return self._can_pause or None
        if action == "resume":
            return self._can_resume or None
        return True

    # -- actions -----------------------------------------------------------------------------

    def _form_error(self, exc: FormError) -> None:
        self.notify(str(exc), severity="error")
        self.form.query_one(f"#{exc.field_id}").focus()

    def action_start(self) -> None:
        """Start a new run with the form's settings."""
        try:
            new = self.form.read()
            name = validate_run_name(new.name) if new.name else default_run_name()
            extra = parse_extra_flags(new.settings.extra_args)
        except FormError as exc:
            self._form_error(exc)
            return
        except RunError as exc:
            self.notify(str(exc), severity="error")
            return
        if self._busy():
            return
        self.grain.prefs.training = new.settings
        self.grain.save_prefs()
        run = self._runs.get(name) or TrainingRun(runs_dir() / name)
        data_dir = Path(new.settings.data_dir).expanduser()
        try:
            run.start(data_dir, new.settings.preset, new.settings.steps, extra)
        except (RunError, OSError) as exc:
            self.notify(str(exc), title="Cannot start training", severity="error", timeout=10)
            return
        self.query_one("#run-name", Input).value = ""
        self._started(run)

    def _busy(self) -> bool:
        """Whether a run is training (only one at a time); says so."""
        busy = [run.name for run in self._runs.values() if run.is_running()]
        if busy:
            self.notify(f"Run {busy[0]} is still training: pause it first (escape).",
                        severity="warning")
        return bool(busy)

    def _started(self, run: TrainingRun) -> None:
        """Follow a run that was just started."""
        name = run.name
        self._runs[name] = run
        names = [name, *(n for n in self._runs if n != name)]
        with self.prevent(Select.Changed):
            self.form.set_runs(names, name)
        self._follow(name)
        self.notify(f"Training {name} started. It keeps going if you close the app.")

    def action_pause(self) -> None:
        """Pause the followed run (after asking)."""
        run = self._run
        if run is None or not run.is_running():
            return

        def answer(confirmed: bool | None) -> None:
            if confirmed and run.stop():
                self.notify(f"Pausing {run.name}: it saves a checkpoint first…")

        self.app.push_screen(ConfirmDialog(
            f"Pause training run {run.name}?\n\nIt saves a checkpoint and stops; ctrl+r "
            "resumes it exactly where it stopped.", confirm="Pause", cancel="Keep training"),
            answer)

    def action_resume(self) -> None:
        """Resume the followed run (up to the steps in the form)."""
        run = self._run
        if run is None:
            self.notify("Choose a run to resume first.", severity="warning")
            return
        try:
            steps = None if run.is_teaching() else self.form.steps()
            extra = parse_extra_flags(self.query_one("#extra-args", Input).value)
            run.resume(steps, extra)
        except FormError as exc:
            self._form_error(exc)
            return
        except (RunError, OSError) as exc:
            self.notify(str(exc), title="Cannot resume", severity="error", timeout=10)
            return
        self._was_running = True
        self.notify(f"Resuming {run.name}" + (f" up to step {steps}." if steps else "."))
        self._poll()

    def action_teach(self) -> None:
        """Ask for a folder of stories, a model to start from and a name; then teach it."""
        folder = self.form.query_one("#data-dir", Input).value.strip()
        self.app.push_screen(TeachDialog(discover_models(runs_dir()), folder), self._teach)

    def _teach(self, request: TeachRequest | None) -> None:
        if request is None:
            return
        if self._busy():
            return
        run = self._runs.get(request.name) or TrainingRun(runs_dir() / request.name)
        try:
            run.teach(request.data_dir, request.base, request.extra)
        except (RunError, OSError) as exc:
            self.notify(str(exc), title="Cannot start teaching", severity="error", timeout=10)
            return
        self._started(run)
        self.notify(f"Teaching {run.name} your stories. When it finishes it is in the Story "
                    "screen's model picker (F2) under that name.")

    @on(Button.Pressed, "#teach")
    def _teach_pressed(self) -> None:
        self.action_teach()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#pause")
    def _pause_pressed(self) -> None:
        self.action_pause()

    @on(Button.Pressed, "#resume")
    def _resume_pressed(self) -> None:
        self.action_resume()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field does nothing surprising: it only moves to the next field."""
        event.stop()
        self.focus_next()
