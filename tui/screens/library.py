"""The Library screen: saved stories to search, read, delete and export."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.markup import escape
from textual.widgets import DataTable, Footer, Input, Static

from ..export import export_story
from ..library import LibraryError, SavedStory
from ..paths import exports_dir
from ..widgets.nav_bar import NavBar
from ..widgets.story_view import StoryView
from .base import GrainScreen
from .confirm import ConfirmDialog
from .export import ExportChoice, ExportDialog

TITLE_WIDTH = 26
EMPTY = "No saved stories yet. Write one on the Story screen (F2) and press ctrl+s to keep it."


class LibraryScreen(GrainScreen):
    """Browse the stories saved in the library."""

    CSS_PATH = "library.tcss"
    PALETTE_GROUP = "Library"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+f", "search", "Search", tooltip="Search the saved stories", priority=True),
        Binding("enter", "read", "Read", tooltip="Read the highlighted story full screen"),
        Binding("delete", "delete", "Delete", tooltip="Delete the highlighted story"),
        Binding("ctrl+o", "export", "Export",
                tooltip="Write the highlighted story to a Markdown or text file", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._stories: dict[int, SavedStory] = {}
        self._error: str | None = None

    def compose(self) -> ComposeResult:
        """Navigation, search field, list and preview, footer."""
        yield NavBar("library")
        yield Input(placeholder="Search titles, text, characters, settings…  (ctrl+f)",
                    compact=True, id="library-search")
        with Horizontal(id="library-body"):
            table: DataTable[str] = DataTable(id="story-table", cursor_type="row",
                                              zebra_stripes=True)
            table.add_columns("Title", "Date")
            yield table
            with Vertical(id="preview-pane"):
                yield Static(id="story-meta")
                yield StoryView(id="library-story")
        yield Footer()

    @property
    def table(self) -> DataTable[str]:
        """The list of stories."""
        return self.query_one("#story-table", DataTable)

    def on_screen_resume(self) -> None:
        """Stories may have been saved on the Story screen meanwhile."""
        self.refresh_stories()
        self.table.focus()

    def refresh_stories(self) -> None:
        """Show the stories matching the search field, keeping the highlighted one if it is."""
        query = self.query_one("#library-search", Input).value
        try:
            stories = self.grain.library.search(query)
        except LibraryError as exc:
            self._stories = {}
            self.table.clear()
            self._show(None, message=f"[b $error]{escape(str(exc))}[/]")
            if str(exc) != self._error:  # once, not at every keystroke of a search
                self.notify(str(exc), title="Library unavailable", severity="error", timeout=15)
            self._error = str(exc)
            return
        self._error = None
        current = self._current()
        self._stories = {story.id: story for story in stories if story.id is not None}
        self.table.clear()
        for story in stories:
            title = story.title if len(story.title) <= TITLE_WIDTH \
                else story.title[: TITLE_WIDTH - 1] + "…"
            self.table.add_row(Text(title), story.local_date()[:10], key=str(story.id))
        if current is not None and current.id in self._stories:
            self.table.move_cursor(row=self.table.get_row_index(str(current.id)))
        if not stories:
            self._show(None, message=EMPTY if not query
                       else f"No story matches “{escape(query)}”.")
        else:
            self._show(self._current())

    def _current(self) -> SavedStory | None:
        """The highlighted story."""
        if not self._stories or self.table.row_count == 0:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        return self._stories.get(int(key)) if key is not None else None

    def _show(self, story: SavedStory | None, message: str = "") -> None:
        """Preview a story (or show a message instead)."""
        meta = self.query_one("#story-meta", Static)
        view = self.query_one("#library-story", StoryView)
        meta.display = story is not None
        if story is None:
            view.show_message(message)
            return
        lines = ["[b]$title[/b]", "$settings", "$model$date"]
        meta.update(Content.from_markup(
            "\n".join(lines), title=story.title, settings=story.settings_line(),
            model=f"{story.model} · " if story.model else "", date=story.local_date()))
        view.set_story(story.text)

    @on(DataTable.RowHighlighted, "#story-table")
    def _on_highlight(self) -> None:
        self._show(self._current())

    @on(Input.Changed, "#library-search")
    def _on_search(self) -> None:
        self.refresh_stories()

    @on(Input.Submitted, "#library-search")
    def _on_search_done(self) -> None:
        self.table.focus()

    @on(DataTable.RowSelected, "#story-table")
    def _on_selected(self) -> None:
        self.action_read()

    def action_search(self) -> None:
        """Focus the search field."""
        self.query_one("#library-search", Input).focus()

    def action_read(self) -> None:
        """Read the highlighted story full screen (escape returns)."""
        if self._current() is not None:
            self.maximize(self.query_one("#library-story", StoryView))

    def action_delete(self) -> None:
        """Delete the highlighted story, after asking."""
        story = self._current()
        if story is None or story.id is None:
            return
        story_id = story.id

        def answer(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                self.grain.library.delete(story_id)
            except LibraryError as exc:
                self.notify(str(exc), severity="error", timeout=15)
                return
            self.notify(f"Deleted “{story.title}”.")
            self.refresh_stories()

        self.app.push_screen(ConfirmDialog(f"Delete “{story.title}” from the library?\n\n"
                                           "This cannot be undone.", confirm="Delete"), answer)

    def action_export(self) -> None:
        """Export the highlighted story as Markdown or plain text."""
        story = self._current()
        if story is None:
            return

        def export(choice: ExportChoice | None) -> None:
            if choice is None:
                return
            try:
                path = export_story(story, choice.folder, choice.fmt)
            except OSError as exc:
                self.notify(f"Could not export: {exc}", severity="error", timeout=10)
                return
            self.notify(f"Exported to {path}")

        self.app.push_screen(ExportDialog(exports_dir()), export)
