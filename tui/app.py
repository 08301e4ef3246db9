"""``grain-tui``: the full-screen storyteller (Story, Training and Library screens)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.notifications import SeverityLevel
from textual.screen import Screen

from . import paths
from .commands import app_commands
from .library import StoryLibrary
from .models import ModelCache
from .prefs import DARK_THEME, LIGHT_THEME, load_preferences, save_preferences
from .runs import list_runs
from .screens.help import HelpScreen
from .screens.library import LibraryScreen
from .screens.story import StoryScreen
from .screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from .screens.training import TrainingScreen


class GrainApp(App[None]):
    """The app: three screens (modes), shared preferences, library and model cache."""

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
                show=False, priority=True),
        Binding("f2", "show_mode('story')", "Story", tooltip="The Story screen", show=False,
                priority=True),
        Binding("f3", "show_mode('training')", "Training", tooltip="The Training screen",
                show=False, priority=True),
        Binding("f4", "show_mode('library')", "Library", tooltip="The story library",
                show=False, priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme", tooltip="Switch between dark and light",
                show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        loaded = load_preferences(paths.prefs_file())
        self.prefs = loaded.prefs
        self._prefs_warning = loaded.warning
        self.models = ModelCache()
        self.library = StoryLibrary(paths.library_file())

    def on_mount(self) -> None:
        """Apply the saved theme and tell the user what needs attention."""
        self.theme = self.prefs.theme if self.prefs.theme in self.available_themes \
            else DARK_THEME
        if self._prefs_warning:
            self.notify(self._prefs_warning, title="Preferences reset", severity="warning",
                        timeout=20)
        running = [run.name for run in list_runs(paths.runs_dir()) if run.is_running()]
        if running:
            self.notify(f"Training run {running[0]} is running: F3 shows it.", timeout=10)
        self._check_size(self.size)

    def on_unmount(self) -> None:
        """Close the library."""
        self.library.close()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Notifications quote paths, titles and errors: never read them as markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- preferences and theme ---------------------------------------------------------------

    def save_prefs(self) -> None:
        """Write the preferences; a failure is reported, never fatal."""
        try:
            save_preferences(paths.prefs_file(), self.prefs)
        except OSError as exc:
            self.notify(f"Could not save your preferences: {exc}", severity="warning")

    def action_toggle_theme(self) -> None:
        """Switch between the dark and the light theme (remembered)."""
        self.theme = LIGHT_THEME if self.theme == DARK_THEME else DARK_THEME
        self.prefs.theme = self.theme
        self.save_prefs()

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

    def action_help(self) -> None:
        """Show the help screen (once)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.BINDINGS))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's own commands plus the app's (see :mod:`tui.commands`)."""
        yield from super().get_system_commands(screen)
        yield from app_commands(self, screen)

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
    """Console-script entry point of ``grain-tui``."""
    GrainApp().run()
