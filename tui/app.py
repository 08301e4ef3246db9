"""``grain-tui``: the full-screen storyteller (Story, Training and Library screens).

The app holds what the screens share: preferences, the library, the story session, reading
aloud, copying, exporting, bedtime mode and the user's keymap.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.geometry import Size
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen

from . import paths
from .clipboard import copy_message, plan_copy, run_tool
from .commands import app_commands
from .export import export_story, fresh_path
from .keymap import check_keymap
from .library import SavedStory, StoryLibrary
from .prefs import DARK_THEME, LIGHT_THEME, load_preferences, save_preferences
from .runs import list_runs
from .screens.branch import BranchDialog
from .screens.confirm import ConfirmDialog
from .screens.export import ExportChoice, ExportDialog
from .screens.help import HelpScreen
from .screens.library import LibraryScreen
from .screens.prompt import PromptDialog
from .screens.story import StoryScreen
from .screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from .screens.training import TrainingScreen
from .screens.versions import VersionsDialog
from .session import StorySession
from .speech import NO_ENGINE, Speaker, export_audio, find_engine, split_sentences
from .themes import BEDTIME_THEME, ThemeProvider

#: How long a notice stays (seconds): time to read it, not long enough to pile up.
NOTICE_SECONDS: dict[SeverityLevel, float] = {"information": 4.0, "warning": 6.0, "error": 10.0}


class GrainApp(App[None]):
    """The app: three screens (modes), shared preferences, library and story session."""

    TITLE = "Grain de Saga"
    CSS_PATH: ClassVar[list[str]] = ["app.tcss", "widgets/widgets.tcss"]
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "story": StoryScreen,
        "training": TrainingScreen,
        "library": LibraryScreen,
    }
    DEFAULT_MODE = "story"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", tooltip="Show every key and where files live",
                show=False, priority=True, id="help"),
        Binding("f2", "show_mode('story')", "Story", tooltip="The Story screen", show=False,
                priority=True, id="show-story"),
        Binding("f3", "show_mode('training')", "Training", tooltip="The Training screen",
                show=False, priority=True, id="show-training"),
        Binding("f4", "show_mode('library')", "Library", tooltip="The story library",
                show=False, priority=True, id="show-library"),
        Binding("f5", "bedtime", "Bedtime",
                tooltip="Bedtime mode: calm colours, wide margins, text at reading speed",
                show=False, priority=True, id="bedtime"),
        Binding("ctrl+t", "toggle_theme", "Theme", tooltip="Switch between dark and light",
                show=False, priority=True, id="toggle-theme"),
    ]
    #: The main screens' bindings, for the help screen (and with the dialogs' below, for the
    #: keymap check).
    MAIN_SCREEN_BINDINGS: ClassVar[dict[str, list[BindingType]]] = {
        "Story screen": StoryScreen.BINDINGS,
        "Training screen": TrainingScreen.BINDINGS,
        "Library screen": LibraryScreen.BINDINGS,
    }
    #: The bindings of each screen and dialog, for the keymap check.
    SCREEN_BINDINGS: ClassVar[dict[str, list[BindingType]]] = {
        **MAIN_SCREEN_BINDINGS,
        "help": HelpScreen.BINDINGS,
        "question": ConfirmDialog.BINDINGS,
        "prompt": PromptDialog.BINDINGS,
        "export dialog": ExportDialog.BINDINGS,
        "branch dialog": BranchDialog.BINDINGS,
        "versions dialog": VersionsDialog.BINDINGS,
    }

    class Notice(Message):
        """A message for the user from a background thread (speech, copy, audio export)."""

        def __init__(self, text: str, severity: SeverityLevel = "information") -> None:
            super().__init__()
            self.text = text
            self.severity = severity

    def __init__(self) -> None:
        super().__init__()
        loaded = load_preferences(paths.prefs_file())
        self.prefs = loaded.prefs
        self._prefs_warning = loaded.warning
        self.session = StorySession()
        self.library = StoryLibrary(paths.library_file())
        self.keymap, self._keymap_problems = check_keymap(
            self.prefs.keymap, self.SCREEN_BINDINGS, self.BINDINGS)
        self._speaker: Speaker | None = None
        self.register_theme(BEDTIME_THEME)

    def on_mount(self) -> None:
        """Apply the saved theme and keys, and tell the user what needs attention."""
        self.set_keymap(self.keymap)
        self._apply_bedtime()
        if self._prefs_warning:
            self.notify(self._prefs_warning, title="Preferences reset", severity="warning",
                        timeout=20)
        if self._keymap_problems:
            self.notify("Ignored in [keymap]:\n" + "\n".join(self._keymap_problems),
                        title="Preferences", severity="warning", timeout=20)
        running = [run.name for run in list_runs(paths.runs_dir()) if run.is_running()]
        if running:
            self.notify(f"Training run {running[0]} is running: {self.key_for('show-training')} "
                        "shows it.", timeout=10)
        self._check_size(self.size)

    def on_unmount(self) -> None:
        """Close the library and silence the speech engine."""
        self.library.close()
        if self._speaker is not None:
            self._speaker.close()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications quote paths, titles and errors: they are plain text unless
        ``markup`` is asked for. They stay at most :data:`NOTICE_SECONDS` (by severity)."""
        longest = NOTICE_SECONDS[severity]
        timeout = longest if timeout is None else min(timeout, longest)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_help_quit(self) -> None:
        """ctrl+c (a habit from other programs): say which key quits, as plain text."""
        for key, active in self.active_bindings.items():
            if active.binding.action in ("quit", "app.quit"):
                self.notify(f"Press {key} to quit the app.", title="Do you want to quit?")
                return

    def on_grain_app_notice(self, message: Notice) -> None:
        """Show a message posted from a background thread."""
        self.notify(message.text, severity=message.severity,
                    timeout=15 if message.severity != "information" else None)

    def key_for(self, binding_id: str) -> str:
        """The (first) key that runs the binding ``binding_id``, the keymap applied, as the
        user would write it: ``ctrl+g``, ``F4``."""
        keys = self.keymap.get(binding_id) or next(
            binding.key for bindings in (self.BINDINGS, *self.SCREEN_BINDINGS.values())
            for binding in bindings if isinstance(binding, Binding) and binding.id == binding_id)
        key = keys.split(",")[0].strip()
        return key.upper() if re.fullmatch(r"f\d+", key) else key

    # -- preferences, theme and bedtime ------------------------------------------------------

    def save_prefs(self) -> None:
        """Write the preferences; a failure is reported, never fatal."""
        try:
            save_preferences(paths.prefs_file(), self.prefs)
        except OSError as exc:
            self.notify(f"Could not save your preferences: {exc}", severity="warning")

    def search_themes(self) -> None:
        """The palette's theme list (without the bedtime theme; the choice is remembered)."""
        self.push_screen(CommandPalette(providers=[ThemeProvider],
                                        placeholder="Search for themes…"))

    def choose_theme(self, name: str) -> None:
        """Use the theme ``name`` from now on (remembered, like ctrl+t); leaves bedtime mode."""
        self.prefs.theme = name
        if self.bedtime:
            self.action_bedtime()
            return
        self._apply_bedtime()
        self.save_prefs()

    def action_toggle_theme(self) -> None:
        """Switch between the dark and the light theme (remembered); in bedtime mode, leave
        it for the theme chosen before."""
        if self.bedtime:
            self.action_bedtime()
            return
        self.prefs.theme = LIGHT_THEME if self.prefs.theme == DARK_THEME else DARK_THEME
        self._apply_bedtime()
        self.save_prefs()

    @property
    def bedtime(self) -> bool:
        """Whether bedtime mode is on."""
        return self.prefs.bedtime.enabled

    def action_bedtime(self) -> None:
        """Switch bedtime mode on or off (remembered)."""
        self.prefs.bedtime.enabled = not self.prefs.bedtime.enabled
        self._apply_bedtime()
        self.save_prefs()
        if self.bedtime:
            self.notify(f"Bedtime mode: stories appear at {self.prefs.bedtime.words_per_minute} "
                        f"words a minute. {self.key_for('bedtime')} switches it off.")
        if isinstance(self.screen, StoryScreen):
            self.screen.bedtime_changed()

    def _apply_bedtime(self) -> None:
        """The calm theme and wide margins in bedtime mode, the chosen theme otherwise."""
        self.set_class(self.bedtime, "-bedtime")
        chosen = self.prefs.theme if self.prefs.theme in self.available_themes else DARK_THEME
        self.theme = BEDTIME_THEME.name if self.bedtime else chosen

    def set_reading_speed(self, text: str | None) -> None:
        """Bedtime reading speed typed by the user (words per minute)."""
        self._set_number(text, "bedtime reading speed", 30, 2000,
                         partial(setattr, self.prefs.bedtime, "words_per_minute"))

    def set_speech_rate(self, text: str | None) -> None:
        """Read-aloud speed typed by the user (words per minute)."""
        self._set_number(text, "read-aloud speed", 60, 500,
                         partial(setattr, self.prefs.speech, "rate"))

    def set_voice(self, text: str | None) -> None:
        """Read-aloud voice typed by the user ("default" for the engine's own)."""
        if text is not None:
            self.prefs.speech.voice = "" if text.strip().lower() == "default" else text.strip()
            self.save_prefs()
            self.notify(f"Read-aloud voice: {self.prefs.speech.voice or 'default'}.")

    def _set_number(self, text: str | None, what: str, low: int, high: int,
                    store: Callable[[int], None]) -> None:
        if text is None:
            return
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.notify(f"The {what} must be a whole number from {low} to {high}.",
                        severity="error")
            return
        store(value)
        self.save_prefs()
        self.notify(f"The {what} is now {value} words a minute.")

    # -- reading aloud -----------------------------------------------------------------------

    def speaker(self) -> Speaker | None:
        """The speaker for the current voice and speed, ``None`` without a speech engine."""
        engine = find_engine()
        if engine is None:
            return None
        voice, rate = self.prefs.speech.voice, self.prefs.speech.rate
        current = self._speaker
        if current is None or (current.engine, current.voice, current.rate) != (engine, voice,
                                                                                rate):
            if current is not None:
                current.close()
            self._speaker = Speaker(engine, voice, rate, self._speech_failed)
        return self._speaker

    def _speech_failed(self, message: str) -> None:
        """Called by the speech thread."""
        self.post_message(self.Notice(f"Reading aloud stopped. {message}", "error"))

    @property
    def speaking(self) -> bool:
        """Whether something is being read aloud."""
        return self._speaker is not None and self._speaker.speaking

    def speak(self, sentences: list[str]) -> None:
        """Read sentences aloud after those already queued (by the speaker :meth:`speaker`
        last gave)."""
        if self._speaker is not None:
            for sentence in sentences:
                self._speaker.say(sentence)

    def read_aloud(self, text: str) -> None:
        """Read a whole story aloud, sentence by sentence (instead of anything being read)."""
        if self.speaker() is None:
            self.notify(NO_ENGINE, severity="error", timeout=15)
            return
        self.stop_speaking()
        self.speak(split_sentences(text))

    def stop_speaking(self) -> None:
        """Stop reading aloud at once."""
        if self._speaker is not None:
            self._speaker.stop()

    # -- copying and exporting ---------------------------------------------------------------

    def copy_text(self, text: str, what: str) -> None:
        """Copy ``text`` through the terminal (OSC 52: works over SSH) and, when the app is
        local, with the system's clipboard program; then say what happened."""
        self.copy_to_clipboard(text)
        plan = plan_copy(os.environ, sys.platform, shutil.which, web=self.is_web)
        export_key = self.key_for("export")
        tool = plan.tool
        if tool is None:
            message, severity = copy_message(plan, False, what, export_key)
            self.notify(message, severity=severity, timeout=10)
            return

        def copy_locally() -> None:
            message, severity = copy_message(plan, run_tool(tool, text), what, export_key)
            self.post_message(self.Notice(message, severity))

        self.run_worker(copy_locally, thread=True, group="clipboard", exit_on_error=False)

    def export(self, story: SavedStory, choice: ExportChoice) -> None:
        """Write a story to a file in the chosen format (audio is recorded in the background);
        the format is remembered for the next export."""
        self.prefs.export_format = choice.fmt
        self.save_prefs()
        if choice.fmt != "audio":
            try:
                path = export_story(story, choice.folder, choice.fmt)
            except OSError as exc:
                self.notify(f"Could not export: {exc}", severity="error", timeout=10)
                return
            self.notify(f"Exported to {path}")
            return
        engine = find_engine()
        if engine is None:
            self.notify(NO_ENGINE, severity="error", timeout=15)
            return
        voice, rate = self.prefs.speech.voice, self.prefs.speech.rate

        def record() -> None:
            try:
                choice.folder.mkdir(parents=True, exist_ok=True)
                target = fresh_path(choice.folder, story.title, engine.audio_suffix)
                export_audio(engine, story.text, target, voice, rate)
            except OSError as exc:
                self.post_message(self.Notice(f"Could not export the audio: {exc}", "error"))
                return
            self.post_message(self.Notice(f"Exported to {target}"))

        self.notify(f"Recording “{story.title}” with {engine.name}…")
        self.run_worker(record, thread=True, group="audio-export", exit_on_error=False)

    # -- screens -----------------------------------------------------------------------------

    def action_show_mode(self, mode: str) -> None:
        """Switch to a main screen (closing the too-small notice, which is re-checked)."""
        self.show_mode(mode)

    def show_mode(self, mode: str) -> None:
        """Switch to a main screen."""
        if isinstance(self.screen, TooSmallScreen):
            self.pop_screen()
        if self.current_mode != mode:
            self.switch_mode(mode)
        self.call_after_refresh(self._check_size, self.size)

    def tell(self, story: SavedStory, how: str, end: int | None = None) -> None:
        """On the Story screen: tell a saved story ``again``, ``continue`` it or ``branch`` it
        after the sentence ending at ``end`` (see :meth:`StoryScreen.tell_saved`)."""
        self.show_mode("story")
        if isinstance(self.screen, StoryScreen):
            self.screen.tell_saved(story, how, end)

    def action_help(self) -> None:
        """Show the help screen (once)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen([("Everywhere", self.BINDINGS),
                                         *self.MAIN_SCREEN_BINDINGS.items()], self.keymap))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's own commands plus the app's (see :mod:`tui.commands`)."""
        yield from super().get_system_commands(screen)
        yield from app_commands(self, screen)

    def ask_number(self, title: str, value: int, store: Callable[[str | None], None]) -> None:
        """Ask for a number (in a small dialog) and hand the answer to ``store``."""
        self.push_screen(PromptDialog(title, str(value)), store)

    def ask_voice(self) -> None:
        """Ask for the read-aloud voice."""
        self.push_screen(PromptDialog("Read-aloud voice (a name your speech engine knows, e.g. "
                                      "Samantha for say, en-gb for espeak-ng; default)",
                                      self.prefs.speech.voice or "default"), self.set_voice)

    # -- terminal size -----------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        """Cover the app with a notice while the terminal is too small for it."""
        self._check_size(event.size)

    def _check_size(self, size: Size) -> None:
        too_small = size.width < MIN_WIDTH or size.height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if too_small and not showing:
            notice = TooSmallScreen()
            self.push_screen(notice)
            self.call_after_refresh(notice.show_size, size.width, size.height)
        elif too_small and isinstance(self.screen, TooSmallScreen):
            self.screen.show_size(size.width, size.height)
        elif showing and not too_small:
            self.pop_screen()


def run() -> None:
    """Console-script entry point of ``grain-tui``: its options (:mod:`tui.cli`), and without
    any, the app."""
    from .cli import main

    status = main(sys.argv[1:])
    if status is None:
        GrainApp().run()
    raise SystemExit(status or 0)

