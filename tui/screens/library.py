"""The Library screen: saved stories to search, filter, read, tell again, grow and keep.

Searching is full text (ranked, matches highlighted in the titles, an excerpt and the story);
the filter line keeps one theme, tone, genre or character. A story can be told again exactly,
continued or branched into a new version (on the Story screen), and its versions browsed.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.markup import escape
from textual.widget import Widget
from textual.widgets import DataTable, Input, Select, Static

from ..highlight import marked_content, marked_text
from ..library import Filters, Found, LibraryError, SavedStory
from ..models import lasting_label
from ..paths import exports_dir
from ..widgets.key_footer import KeyFooter
from ..widgets.library_filters import LibraryFilters
from ..widgets.nav_bar import NavBar
from ..widgets.story_view import StoryView, with_paragraph_space
from .base import GrainScreen
from .branch import BranchDialog
from .confirm import ConfirmDialog
from .export import ExportChoice, ExportDialog
from .versions import VersionsDialog

TITLE_WIDTH = 24
VERSION_MARK = "↳ "


class LibraryScreen(GrainScreen):
    """Browse the stories saved in the library."""

    CSS_PATH = "library.tcss"
    PALETTE_GROUP = "Library"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+f", "search", "Search", tooltip="Search the saved stories", priority=True,
                id="search"),
        Binding("enter", "read", "Read", tooltip="Read the highlighted story full screen",
                id="read"),
        Binding("t", "tell_again", "Tell again",
                tooltip="Tell the highlighted story again: same model, settings and seed",
                id="tell-again"),
        Binding("ctrl+n", "continue", "Continue",
                tooltip="Write what happens next in the highlighted story (a new version)",
                priority=True, id="continue"),
        Binding("f6", "branch", "Branch",
                tooltip="Write a new version of the highlighted story from one of its "
                        "sentences", priority=True, id="branch"),
        Binding("v", "versions", "Versions",
                tooltip="The versions of the highlighted story (continued, branched)",
                id="versions"),
        Binding("ctrl+l", "read_aloud", "Read aloud",
                tooltip="Read the highlighted story aloud (again to stop)", priority=True,
                id="read-aloud"),
        Binding("delete", "delete", "Delete", tooltip="Delete the highlighted story",
                id="delete"),
        Binding("ctrl+o", "export", "Export",
                tooltip="Write the highlighted story to a Markdown, text, HTML or audio file",
                priority=True, show=False, id="export"),
        Binding("ctrl+y", "copy", "Copy", tooltip="Copy the highlighted story to the clipboard",
                priority=True, show=False, id="copy"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._found: dict[int, Found] = {}
        self._error: str | None = None

    def compose(self) -> ComposeResult:
        """Navigation, search field, filters, list and preview, footer."""
        yield NavBar("library")
        yield Input(placeholder="Search the titles and stories…  (ctrl+f)", compact=True,
                    id="library-search")
        yield LibraryFilters(id="library-filters")
        with Horizontal(id="library-body"):
            table: DataTable[str] = DataTable(id="story-table", cursor_type="row",
                                              zebra_stripes=True)
            table.add_columns("Title", "Date")
            yield table
            with Vertical(id="preview-pane"):
                yield Static(id="story-meta")
                yield StoryView(id="library-story")
        yield KeyFooter(compact=True, show_command_palette=False)  # ^p is on the top line

    @property
    def table(self) -> DataTable[str]:
        """The list of stories."""
        return self.query_one("#story-table", DataTable)

    @property
    def filters(self) -> LibraryFilters:
        """The filter line."""
        return self.query_one(LibraryFilters)

    def on_screen_resume(self) -> None:
        """Stories may have been saved on the Story screen meanwhile."""
        self.refresh_stories()
        self.table.focus()

    def _empty_text(self) -> str:
        return (f"No saved stories yet. Write one on the Story screen "
                f"({self.key('show-story')}) and press {self.key('save')} to keep it.")

    def refresh_stories(self) -> None:
        """Show the stories matching the search and filters, keeping the highlighted one."""
        query = self.query_one("#library-search", Input).value
        library = self.grain.library
        try:
            self.filters.set_characters(library.characters())
            found = library.search(query, self.filters.read())
        except LibraryError as exc:
            self._found = {}
            self.table.clear()
            self._show(None, message=f"[b $error]{escape(str(exc))}[/]")
            if str(exc) != self._error:  # once, not at every keystroke of a search
                self.notify(str(exc), title="Library unavailable", severity="error", timeout=15)
            self._error = str(exc)
            return
        self._error = None
        notice = library.take_notice()
        if notice:
            self.notify(notice, title="Library search", severity="warning", timeout=15)
        current = self._current()
        self._found = {hit.story.id: hit for hit in found if hit.story.id is not None}
        self.table.clear()
        for hit in found:
            mark = VERSION_MARK if hit.story.parent_id is not None else ""
            self.table.add_row(marked_text(mark + hit.title, TITLE_WIDTH),
                               hit.story.local_date()[:10], key=str(hit.story.id))
        if current is not None and current.id in self._found:
            self.table.move_cursor(row=self.table.get_row_index(str(current.id)))
        if found:
            self._show(self._current_hit())
        elif query.strip() or self.filters.read() != Filters():
            self._show(None, message="No story matches this search.")
        else:
            self._show(None, message=self._empty_text())

    def _current_hit(self) -> Found | None:
        """The highlighted search result."""
        if not self._found or self.table.row_count == 0:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        return self._found.get(int(key)) if key is not None else None

    def _current(self) -> SavedStory | None:
        """The highlighted story."""
        hit = self._current_hit()
        return hit.story if hit is not None else None

    def _show(self, hit: Found | None, message: str = "") -> None:
        """Preview a story, its matches highlighted (or show a message instead)."""
        meta = self.query_one("#story-meta", Static)
        view = self.query_one("#library-story", StoryView)
        meta.display = hit is not None
        if hit is None:
            view.show_message(message)
            return
        story = hit.story
        lines = [marked_content(hit.title).stylize_before("bold"),
                 Content(story.settings_line()),
                 Content(f"{lasting_label(story.model)} · {story.local_date()}" if story.model
                         else story.local_date())]
        lineage = self._lineage(story)
        if lineage:
            lines.append(Content(lineage))
        if hit.snippet:
            lines.append(marked_content(hit.snippet))
        meta.update(Content("\n").join(lines))
        view.set_story(story.text, marked_content(with_paragraph_space(hit.text)) if hit.snippet
                       else None)

    def _lineage(self, story: SavedStory) -> str:
        """Where a story stands among its versions, e.g. ``↳ from “X” · 3 versions (v)``."""
        if story.id is None:
            return ""
        try:
            family = self.grain.library.family(story.id)
            parent = self.grain.library.get(story.parent_id) if story.parent_id else None
        except LibraryError:
            return ""
        parts = [f"{VERSION_MARK}from “{parent.title}”"] if parent is not None else []
        if len(family) > 1:
            parts.append(f"{len(family)} versions ({self.key('versions')})")
        return " · ".join(parts)

    @on(DataTable.RowHighlighted, "#story-table")
    def _on_highlight(self) -> None:
        self._show(self._current_hit())

    @on(Input.Changed, "#library-search")
    @on(Select.Changed, "#library-filters Select")
    def _on_search(self) -> None:
        self.refresh_stories()

    @on(Input.Submitted, "#library-search")
    def _on_search_done(self) -> None:
        self.table.focus()

    @on(DataTable.RowSelected, "#story-table")
    def _on_selected(self) -> None:
        self.action_read()

    def select_story(self, story_id: int) -> None:
        """Highlight a story, clearing the search and filters if they hide it."""
        if story_id not in self._found:
            search = self.query_one("#library-search", Input)
            with self.prevent(Input.Changed, Select.Changed):
                search.value = ""
                self.filters.clear()
            self.refresh_stories()
        if story_id in self._found:
            self.table.move_cursor(row=self.table.get_row_index(str(story_id)))
            self.table.focus()

    def action_search(self) -> None:
        """Focus the search field."""
        self.query_one("#library-search", Input).focus()

    def action_read(self) -> None:
        """Read the highlighted story full screen (escape returns)."""
        story = self.query_one("#library-story", StoryView)
        if self._current() is not None and self.maximize(story, container=False):
            story.focus()  # the keys scroll the story, not the hidden list

    def watch_maximized(self, maximized: Widget | None) -> None:
        """Back from reading full screen: the list has the keys again."""
        if maximized is None:
            self.table.focus()

    def action_tell_again(self) -> None:
        """Tell the highlighted story again on the Story screen: the very same story."""
        story = self._current()
        if story is not None:
            self.grain.tell(story, "again")

    def action_continue(self) -> None:
        """Continue the highlighted story on the Story screen (a new, linked version)."""
        story = self._current()
        if story is not None:
            self.grain.tell(story, "continue")

    def action_branch(self) -> None:
        """Choose a sentence of the highlighted story, then write a new version from there."""
        story = self._current()
        if story is None:
            return

        def branch(end: int | None) -> None:
            if end is not None:
                self.grain.tell(story, "branch", end)

        self.app.push_screen(BranchDialog(story.title, story.text), branch)

    def action_versions(self) -> None:
        """Show the versions of the highlighted story; the chosen one is highlighted."""
        story = self._current()
        if story is None or story.id is None:
            return
        try:
            family = self.grain.library.family(story.id)
        except LibraryError as exc:
            self.notify(str(exc), severity="error", timeout=15)
            return
        if len(family) < 2:
            self.notify(f"“{story.title}” has no other versions yet: {self.key('continue')} "
                        f"continues it, {self.key('branch')} branches it.")
            return

        def chosen(story_id: int | None) -> None:
            if story_id is not None:
                self.select_story(story_id)

        self.app.push_screen(VersionsDialog(family, story.id), chosen)

    def action_read_aloud(self) -> None:
        """Read the highlighted story aloud, or stop reading."""
        story = self._current()
        if self.grain.speaking:
            self.grain.stop_speaking()
        elif story is not None:
            self.grain.read_aloud(story.text)

    def action_copy(self) -> None:
        """Copy the highlighted story to the clipboard."""
        story = self._current()
        if story is not None:
            self.grain.copy_text(story.text, "Story")

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
        """Export the highlighted story as Markdown, plain text, HTML or audio."""
        story = self._current()
        if story is None:
            return

        def export(choice: ExportChoice | None) -> None:
            if choice is not None:
                self.grain.export(story, choice)

        self.app.push_screen(ExportDialog(exports_dir(), self.grain.prefs.export_format), export)
