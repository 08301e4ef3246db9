"""The Training screen's "Teach it your stories": a folder, its size, a name, a real trainer
fine-tuning the (tiny) shipped model, live losses, and the result in the model picker."""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURES
from textual.widgets import Select, Static
from tui_helpers import AppHome, notifications, replace_text, wait_for

from tui.app import GrainApp
from tui.runs import TrainingRun
from tui.screens.teach import TeachDialog
from tui.screens.training import TrainingScreen
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_stats import RunStats

SIZE = (80, 24)
FAMILY = FIXTURES / "family" / "train"


def summary(app: GrainApp) -> str:
    return str(app.screen.query_one("#teach-summary", Static).render())


async def test_teach_a_folder_of_stories_and_find_the_model_in_the_picker(
        app_home: AppHome, tiny_run: Path, tmp_path: Path) -> None:
    app_home.install_shipped_model(tiny_run)
    empty = tmp_path / "empty"
    empty.mkdir()
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, TeachDialog)
        await replace_text(pilot, "teach-folder", str(empty), paste=True)
        await wait_for(pilot, lambda: "no .txt files" in summary(app), what="empty folder")
        await replace_text(pilot, "teach-folder", str(FAMILY), paste=True)
        await wait_for(pilot, lambda: "32 stories" in summary(app), what="the story count")
        assert "tokens" in summary(app)
        assert app.screen.query_one("#teach-base", Select).value == app_home.shipped
        await replace_text(pilot, "teach-name", "juniper")
        await replace_text(pilot, "teach-extra", "--steps 6 --eval_every 3 --replay 0.25",
                           paste=True)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="closing")
        stats = app.screen.query_one(RunStats)
        await wait_for(pilot, lambda: "finished" in str(stats.render()), timeout=120,
                       what="the fine-tune to finish")
        chart = str(app.screen.query_one(LossChart).render())
        assert "train" in chart and "valid" in chart
        assert app.screen.query_one("#run-select", Select).value == "juniper"
        assert TrainingRun(app_home.runs / "juniper").is_teaching()
        assert any("juniper" in m for m in notifications(app))

        await pilot.press("f2")
        await pilot.pause()
        picker = app.screen.query_one("#model", Select)
        assert "juniper (final)" in [str(prompt) for prompt, _ in picker._options]


async def test_the_dialog_refuses_a_missing_folder_and_a_bad_name(
        app_home: AppHome, tiny_run: Path) -> None:
    app_home.install_shipped_model(tiny_run)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "ctrl+o")
        await pilot.pause()
        await replace_text(pilot, "teach-folder", "/no/such/stories", paste=True)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TeachDialog)
        assert any("stories folder not found" in m for m in notifications(app))
        await replace_text(pilot, "teach-folder", str(FAMILY), paste=True)
        await replace_text(pilot, "teach-name", "../escape")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TeachDialog)
        assert any("is not allowed" in m for m in notifications(app))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TrainingScreen)
        assert not list(app_home.runs.glob("*")) if app_home.runs.exists() else True
