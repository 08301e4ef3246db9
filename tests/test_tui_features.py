"""The storyteller features beyond writing a story, driven with real keys at 80x24: copy over
SSH, full-text library search, continue and branch, read aloud, audio export, bedtime mode,
remapped keys and the inline one-shot story.

Speech engines and clipboard programs are faked at the process boundary: small scripts put
first on ``PATH`` that log how they were called (see ``AppHome.fake_program``).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.content import Content
from textual.drivers.headless_driver import HeadlessDriver
from textual.widgets import DataTable, OptionList, Select, Static
from tui_helpers import (
    AppHome,
    notifications,
    replace_text,
    scripted_story,
    status_text,
    story_text,
    wait_for,
)

from saga_model import SamplingOptions, StoryRequest, load_model, tell_story
from tui.app import GrainApp
from tui.highlight import MATCH_STYLE
from tui.inline import InlineStoryApp
from tui.library import SavedStory, StoryLibrary
from tui.paths import library_file
from tui.screens.branch import BranchDialog
from tui.screens.help import HelpScreen
from tui.screens.library import LibraryScreen
from tui.screens.prompt import PromptDialog
from tui.screens.story import StoryScreen
from tui.screens.versions import VersionsDialog
from tui.session import StoryJob, model_fingerprint
from tui.speech import NO_ENGINE
from tui.themes import BEDTIME_THEME
from tui.widgets.story_view import StoryView

SIZE = (80, 24)


def write_prefs(home: AppHome, text: str) -> None:
    """Preferences as the user would write them."""
    home.prefs.parent.mkdir(parents=True, exist_ok=True)
    home.prefs.write_text(text)


def save_story(**fields: Any) -> SavedStory:
    """Put a story in the library (closed again, as another session would leave it)."""
    library = StoryLibrary(library_file())
    story = SavedStory(**{"created_at": datetime(2025, 3, 1, tzinfo=UTC), **fields})
    library.add(story)
    library.close()
    return story


def calls(log: Path) -> list[dict[str, Any]]:
    """The calls a fake program logged."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def finished(app: GrainApp) -> bool:
    """Whether the Story screen shows a finished story."""
    return isinstance(app.screen, StoryScreen) and any(
        state in status_text(app) for state in ("done", "max length"))


# -- copy -------------------------------------------------------------------------------------

async def test_copy_uses_osc52_over_ssh_and_the_local_clipboard_otherwise(
        app_home: AppHome, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Zara found a shell. It sang to her. «Bonne nuit», said the sea."
    save_story(title="The singing shell", text=text)
    xclip = app_home.fake_program("xclip")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SSH_TTY", "/dev/pts/3")
    written: list[str] = []  # what the app sends to the terminal
    monkeypatch.setattr(HeadlessDriver, "write", lambda _driver, data: written.append(data))
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("ctrl+y")
        await pilot.pause()
        osc52 = f"\x1b]52;c;{base64.b64encode(text.encode()).decode()}\a"
        assert osc52 in written
        assert any("over SSH (OSC 52)" in m for m in notifications(app))
        assert calls(xclip) == []  # remote: the local clipboard is not the user's

        monkeypatch.delenv("SSH_TTY")  # at the machine itself: the local clipboard too
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: any("copied to the clipboard" in m
                                          for m in notifications(app)), what="local copy")
        assert calls(xclip) == [{"args": ["-selection", "clipboard"], "stdin": text}]

        monkeypatch.setenv("SSH_CONNECTION", "10.0.0.2 5022 10.0.0.3 22")
        monkeypatch.setenv("TERM_PROGRAM", "Apple_Terminal")
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert any("macOS Terminal cannot receive copied text over SSH" in m
                   for m in notifications(app))
        assert written.count(osc52) == 3


# -- library search ---------------------------------------------------------------------------

async def test_search_finds_a_word_in_the_middle_of_a_story_and_filters_narrow_it(
        app_home: AppHome) -> None:
    long_text = " ".join(["Milo counted the waves one by one."] * 30
                         + ["Far away a lighthouse blinked at him."]
                         + ["He counted the stars too."] * 30)
    save_story(title="Waves", text=long_text, theme="friendship", characters="Milo")
    save_story(title="The [b]red[/b] kite", text="Zara flew a red kite.", theme="courage",
               characters="Zara, Milo")
    save_story(title="Owls", text="The owls slept.", theme="courage")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#story-table", DataTable)
        assert table.row_count == 3
        await pilot.press("ctrl+f", *"lighthouse")
        await pilot.pause()
        assert table.row_count == 1
        meta = str(app.screen.query_one("#story-meta", Static).render())
        assert "Waves" in meta and "lighthouse blinked" in meta  # the excerpt around the match
        shown = app.screen.query_one("#library-story", StoryView).shown
        assert isinstance(shown, Content)
        matches = [shown.plain[s.start:s.end] for s in shown.spans if s.style == MATCH_STYLE]
        assert matches == ["lighthouse"]

        await pilot.press("ctrl+a", "ctrl+k", *'red" (kite*')  # FTS syntax is just text
        await pilot.pause()
        assert table.row_count == 1 and app.is_running
        meta = app.screen.query_one("#story-meta", Static).render()
        assert "The [b]red[/b] kite" in str(meta)  # shown as typed, not as markup

        await pilot.press("ctrl+a", "ctrl+k")
        await pilot.pause()
        app.screen.query_one("#filter-theme", Select).value = "courage"
        await pilot.pause()
        assert table.row_count == 2
        app.screen.query_one("#filter-character", Select).value = "Milo"
        await pilot.pause()
        assert table.row_count == 1
        assert app.screen.query_one("#filter-character", Select).value == "Milo"
        assert "kite" in str(app.screen.query_one("#story-meta", Static).render())


# -- continue, branch, versions ---------------------------------------------------------------

def story_by(app: GrainApp, title: str, newest: bool = False) -> SavedStory:
    """The (first, or newest) saved story with this title."""
    stories = [hit.story for hit in app.library.search() if hit.story.title == title]
    return max(stories, key=lambda s: s.id or 0) if newest else min(stories,
                                                                     key=lambda s: s.id or 0)


async def test_branch_creates_a_linked_version_and_versions_are_browsable(
        app_home: AppHome, tiny_run: Path) -> None:
    model = app_home.install_model(tiny_run)
    text = ("Zara woke up early. She packed a red kite. The wind was strong. "
            "The kite flew over the sea.")
    save_story(title="Zara's kite", text=text, characters="Zara", model_path=str(model),
               model_id=model_fingerprint(model), seed=5,
               sampling={"temperature": 0.8, "top_p": 0.95, "max_tokens": 30, "seed": 5})
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, BranchDialog)
        assert app.screen.query_one(OptionList).option_count == 4
        await pilot.press("up", "up", "enter")  # after the 2nd of 4 sentences
        await wait_for(pilot, lambda: finished(app), what="new version written")
        new_text = story_text(app)
        assert new_text.startswith("Zara woke up early. She packed a red kite.")
        assert not new_text.startswith(text[:70])
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("enter")  # the suggested title
        await pilot.pause()
        original = story_by(app, "Zara's kite")
        branch = story_by(app, "Zara's kite (new version)")
        assert branch.parent_id == original.id and branch.text == new_text.strip()
        assert branch.opening == "Zara woke up early. She packed a red kite."

        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#story-table", DataTable)
        assert str(table.get_row_at(0)[0]).startswith("↳ Zara's kite (new")  # newest first
        assert table.cursor_row == 1  # still on the story that was branched
        assert "2 versions" in str(app.screen.query_one("#story-meta", Static).render())
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, VersionsDialog)
        assert [str(o.prompt).split("  ")[0] for o in app.screen.query_one(
            OptionList).options] == ["Zara's kite", "└ Zara's kite (new version)"]
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, LibraryScreen)
        assert table.cursor_row == 0
        assert "from “Zara's kite”" in str(app.screen.query_one("#story-meta", Static).render())


async def test_continue_goes_on_from_a_story_longer_than_the_context(
        app_home: AppHome, tiny_run: Path) -> None:
    model = app_home.install_model(tiny_run)
    text = " ".join(["Milo and Zara walked to the big old tree and sat down."] * 25)
    assert len(load_model(tiny_run)[1].encode(text)) > 128  # the tiny model's context
    save_story(title="The walk", text=text, characters="Milo, Zara", model_path=str(model),
               model_id=model_fingerprint(model),
               sampling={"temperature": 0.8, "top_p": 0.95, "max_tokens": 40, "seed": 1})
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: finished(app), what="continuation written")
        await pilot.pause()  # the seed under the pane follows the end of the story
        continued = story_text(app)
        seed = int(str(app.screen.query_one("#story-pane").border_subtitle).split()[1])
        await pilot.press("ctrl+s", "enter")
        await pilot.pause()
        saved = story_by(app, "The walk (continued)")
        assert saved.parent_id == story_by(app, "The walk").id and saved.seed == seed

        await pilot.press("ctrl+n")  # and on from there, on the Story screen
        await wait_for(pilot, lambda: finished(app) and len(story_text(app)) > len(continued),
                       what="second continuation written")
        assert story_text(app).startswith(continued.strip())
        await pilot.press("ctrl+s", "enter")
        await pilot.pause()
        assert story_by(app, "The walk (continued)", newest=True).parent_id == saved.id
    assert continued.startswith(text) and len(continued) > len(text)
    loaded_model, tokenizer = load_model(tiny_run)
    request = StoryRequest(characters=("Milo", "Zara"), opening=text + "\n")  # a paragraph
    assert continued == tell_story(loaded_model, tokenizer, request, SamplingOptions(
        temperature=0.8, top_p=0.95, max_tokens=40, seed=seed,  # the saved story's sampling
        min_tokens=40))  # all of it new (at most 80, never more than max_tokens)


# -- read aloud -------------------------------------------------------------------------------

async def test_read_aloud_speaks_each_sentence_as_it_appears_and_stops_on_the_key(
        app_home: AppHome, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_home.install_model(tiny_run)
    write_prefs(app_home, '[speech]\nvoice = "Moira"\nrate = 170\n')
    say = app_home.fake_program("say")
    scripted_story(monkeypatch, ["Zara ", "ran home", ". She smiled", "! \"Good", " night",
                                 ",\" said Milo. The", " end"])
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.prefs.speech.enabled and any("Read aloud is on" in m
                                                for m in notifications(app))
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(calls(say)) == 4, what="four sentences spoken")
        assert [c["stdin"] for c in calls(say)] == ["Zara ran home.", "She smiled!",
                                                    '"Good night," said Milo.', "The end"]
        assert all(c["args"] == ["-v", "Moira", "-r", "170", "-f", "-"] for c in calls(say))

        say.unlink()
        say = app_home.fake_program("say", delay=30)  # a slow voice: stop it mid-sentence
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(calls(say)) == 1 and app.speaking,
                       what="first sentence being spoken")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.speaking, timeout=5, what="speech stopped")
        await pilot.pause(0.5)
        assert len(calls(say)) == 1, "sentences were still spoken after escape"


async def test_read_aloud_without_a_speech_engine_says_what_to_install(
        app_home: AppHome, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(app_home.bin))  # nothing to speak with
    save_story(title="Owls", text="The owls slept.")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert NO_ENGINE in notifications(app) and not app.prefs.speech.enabled
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert notifications(app).count(NO_ENGINE) == 2 and app.is_running


async def test_export_audio_records_the_story_with_the_engine(app_home: AppHome,
                                                              tmp_path: Path) -> None:
    espeak = app_home.fake_program("espeak-ng")
    save_story(title="Owls at night", text="The owls slept. The moon rose.")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("#export-format", Select).focus()
        await pilot.press("enter", "down", "down", "down", "enter")
        assert app.screen.query_one("#export-format", Select).value == "audio"
        await replace_text(pilot, "export-folder", str(tmp_path / "audio"), paste=True)
        await pilot.press("enter")
        target = tmp_path / "audio" / "owls-at-night.wav"
        await wait_for(pilot, lambda: any(str(target) in m for m in notifications(app)),
                       what="audio exported")
    assert target.read_bytes() == b"FORM....AIFF"
    assert [p.name for p in target.parent.iterdir()] == ["owls-at-night.wav"]
    (call,) = calls(espeak)
    assert call["stdin"] == "The owls slept. The moon rose."
    assert call["args"][:2] == ["-s", "150"] and call["args"][-1] == "--stdin"


# -- bedtime ----------------------------------------------------------------------------------

async def test_bedtime_mode_is_calm_and_lets_the_story_out_at_reading_speed(
        app_home: AppHome, tiny_run: Path) -> None:
    app_home.install_model(tiny_run)
    write_prefs(app_home, "[story]\nseed = 3\nmax_tokens = 40\n"
                          "[bedtime]\nwords_per_minute = 1200\n")
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ready" in status_text(app), what="model loaded")
        await pilot.press("f5")
        await pilot.pause()
        assert app.theme == BEDTIME_THEME.name and app.has_class("-bedtime")
        assert not app.screen.query_one("#settings-pane").display
        assert "hidden in bedtime mode" in app.screen.query_one(StoryView).shown.plain
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "telling" in status_text(app) or finished(app),
                       what="generation finished")
        assert "telling" in status_text(app), "the text was not held back"
        shown_when_written = story_text(app)
        await wait_for(pilot, lambda: finished(app), what="story told")
        final = story_text(app)
        assert len(shown_when_written.split()) < len(final.split()) // 2
        await pilot.press("f5")
        await pilot.pause()
        assert app.theme == "textual-dark" and app.screen.query_one("#settings-pane").display
    model, tokenizer = load_model(tiny_run)
    assert final == tell_story(model, tokenizer, StoryRequest(),
                               SamplingOptions(max_tokens=40, seed=3))
    assert "enabled = false" in app_home.prefs.read_text().split("[bedtime]")[1]


# -- keymap -----------------------------------------------------------------------------------

async def test_keys_are_remapped_from_preferences_and_bad_entries_are_reported(
        app_home: AppHome) -> None:
    write_prefs(app_home, '[keymap]\ngenerate = "ctrl+w"\nbedtime = "f9"\nhelp = "g"\n'
                          'copy = "ctrl+r"\nno-such-thing = "f8"\nstop = "ctrl+"\n')
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        (warning,) = [m for m in notifications(app) if "Ignored in [keymap]" in m]
        for bad in ("help = 'g'", "copy = 'ctrl+r': ctrl+r is already Again",
                    "no-such-thing", "stop = 'ctrl+'"):
            assert bad in warning
        assert "generate" not in warning and app.keymap == {"generate": "ctrl+w",
                                                           "bedtime": "f9"}
        await pilot.press("ctrl+g")  # no longer bound
        await pilot.pause()
        assert not [m for m in notifications(app) if "no model to write with" in m]
        await pilot.press("ctrl+w")
        await pilot.pause()
        assert any("no model to write with" in m for m in notifications(app))
        assert app.screen.active_bindings["ctrl+w"].binding.action == "generate"
        await pilot.press("f9")
        await pilot.pause()
        assert app.bedtime
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "ctrl+w" in help_text and "[generate]" in help_text


# -- inline -----------------------------------------------------------------------------------

async def test_inline_story_streams_then_returns_its_text(tiny_run: Path,
                                                         tmp_path: Path) -> None:
    request = StoryRequest.create(characters="Zara")
    options = SamplingOptions(max_tokens=30, seed=9)
    app = InlineStoryApp(StoryJob(request, options, tiny_run, "tiny"))
    async with app.run_test(size=(80, 10)) as pilot:
        await wait_for(pilot, lambda: app.return_value is not None, what="story written")
    model, tokenizer = load_model(tiny_run)
    assert app.return_value == tell_story(model, tokenizer, request, options)
    assert app.error is None

    stopped = InlineStoryApp(StoryJob(request, SamplingOptions(max_tokens=2000), tiny_run,
                                      "tiny"))
    async with stopped.run_test(size=(80, 10)) as pilot:
        await pilot.press("escape")  # before (or while) it writes: what was written is kept
    assert stopped.return_value is not None and stopped.error is None

    broken = InlineStoryApp(StoryJob(request, options, tmp_path, "none"))  # no model there
    async with broken.run_test(size=(80, 10)) as pilot:
        await wait_for(pilot, lambda: broken.return_value is not None, what="error")
    assert broken.error is not None and "model" in broken.error


async def test_reading_speed_and_voice_are_set_from_the_palette(app_home: AppHome) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"reading", "enter")  # "Bedtime: reading speed…"
        await wait_for(pilot, lambda: isinstance(app.screen, PromptDialog), what="dialog")
        await replace_text(pilot, "prompt-input", "90")
        await pilot.press("enter")
        await pilot.pause()
        assert app.prefs.bedtime.words_per_minute == 90
        app.set_reading_speed("5")  # what the same dialog hands over for a bad answer
        await pilot.pause()
        assert any("from 30 to 2000" in m for m in notifications(app))
        app.ask_voice()
        await pilot.pause()
        await replace_text(pilot, "prompt-input", "Moira")
        await pilot.press("enter")
        await pilot.pause()
        assert app.prefs.speech.voice == "Moira" and app.prefs.bedtime.words_per_minute == 90
    saved = app_home.prefs.read_text()
    assert "words_per_minute = 90" in saved and 'voice = "Moira"' in saved
