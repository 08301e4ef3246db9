"""The Training screen with a real (tiny) trainer process: start, plot, pause, resume,
re-attach after a restart, and trainer errors shown in the UI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Select
from tui_helpers import AppHome, notifications, replace_text, wait_for

from tui.app import GrainApp
from tui.runs import TrainingRun, list_runs
from tui.screens.training import TrainingScreen
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_stats import RunStats

pytestmark = pytest.mark.asyncio
SIZE = (80, 24)



def stats(app: GrainApp) -> str:
    """The dashboard's numbers."""
    return str(app.screen.query_one(RunStats).render())


def chart(app: GrainApp) -> str:
    """The loss chart as the terminal shows it."""
    return str(app.screen.query_one(LossChart).render())


async def test_train_quit_reattach_pause_and_resume(app_home: AppHome,
                                                   corpus_dir: Path) -> None:
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, TrainingScreen)
        assert "No training run yet" in stats(app)
        assert "train" not in chart(app)
        await replace_text(pilot, "data-dir", str(corpus_dir), paste=True)
        await replace_text(pilot, "run-name", "bedtime")
        app.screen.query_one("#preset", Select).focus()
        await pilot.press("enter", "up", "enter")  # seed -> tiny
        assert app.screen.query_one("#preset", Select).value == "tiny"
        await replace_text(pilot, "steps", "5000")
        await replace_text(pilot, "extra-args", "--batch_size 4 --eval_every 10 --save_every 0",
                           paste=True)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "step 10/5,000" in stats(app), timeout=60,
                       what="first step event")
        await wait_for(pilot, lambda: "val " in stats(app) and "best" in stats(app),
                       timeout=30, what="first evaluation")
        assert "train" in chart(app) and "valid" in chart(app)  # both series are plotted
        assert "Sample at step" in app.screen.query_one("#sample-view").border_title
    # The app is gone (as when the terminal or SSH session closes); training is not.
    run = TrainingRun(app_home.runs / "bedtime")
    assert run.is_running()

    app = GrainApp()  # reopening the app re-attaches to the running run
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("bedtime is running" in message for message in notifications(app))
        await pilot.press("f3")
        await wait_for(pilot, lambda: "training" in stats(app) and "val " in stats(app),
                       what="re-attached")
        assert app.screen.query_one("#run-select", Select).value == "bedtime"
        step = app.screen.progress.step
        await wait_for(pilot, lambda: app.screen.progress.step > step, what="more steps")

        # Pause: asks first, then the trainer saves a checkpoint and exits cleanly.
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("left", "enter")  # "Pause", not "Keep training"
        await wait_for(pilot, lambda: "paused" in stats(app), timeout=60, what="paused")
        paused_step = app.screen.progress.step
        assert not run.is_running()

        # Resume to a nearby total: it continues from the checkpoint and finishes.
        await replace_text(pilot, "steps", str(paused_step + 20))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "finished (completed)" in stats(app), timeout=60,
                       what="finished")
        assert app.screen.progress.step == paused_step + 20
        assert app.screen.progress.steps == sorted(app.screen.progress.steps)
        assert f"step {paused_step + 20:,}/{paused_step + 20:,}" in stats(app)
        await pilot.press("f2")  # the new model is offered for stories
        await pilot.pause()
        assert "bedtime" in str(app.screen.query_one("#model", Select).selection)


async def test_trainer_errors_are_shown(app_home: AppHome, tmp_path: Path) -> None:
    empty = tmp_path / "no-stories"
    empty.mkdir()
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        await replace_text(pilot, "data-dir", str(tmp_path / "missing"), paste=True)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert any("data directory not found" in m for m in notifications(app))
        assert list_runs(app_home.runs) == []

        await replace_text(pilot, "data-dir", str(empty), paste=True)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "failed" in stats(app), timeout=60, what="failure")
        assert "grain-train: error:" in stats(app)
        assert any("grain-train: error:" in m for m in notifications(app))

        await replace_text(pilot, "extra-args", "--steps 3")  # set by the form, refused
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert any("--steps is set by the form" in m for m in notifications(app))
    assert not any(run.is_running() for run in list_runs(app_home.runs))
    assert os.listdir(app_home.runs)  # the failed run's log stays for the user to read
