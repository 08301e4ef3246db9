"""The Training screen with a real (tiny) trainer process: start, plot, pause, resume,
re-attach after a restart, and trainer errors shown in the UI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.widgets import Select
from textual.widgets._select import SelectOverlay
from tui_helpers import AppHome, notifications, replace_text, wait_for

from tui.app import GrainApp
from tui.runs import TrainingRun, list_runs
from tui.screens.training import TrainingScreen
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_stats import RunStats

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


def finished_run(home: AppHome, name: str, sample_step: int) -> None:
    """A run folder as a finished run leaves it: a checkpoint and an evaluation with a sample."""
    folder = home.runs / name
    (folder / "checkpoints" / f"step_{sample_step}").mkdir(parents=True)
    (folder / "checkpoints" / f"step_{sample_step}" / "state.json").write_text("{}")
    steps = [{"event": "step", "time": 0, "step": step, "total_steps": sample_step,
              "loss": 2.5 + 6 * 0.99 ** step, "lr": 1e-3, "grad_norm": 1.0,
              "tokens_per_sec": 5000.0, "tokens_seen": 2048 * step, "elapsed": 0.86 * step}
             for step in range(10, sample_step + 1, 10)]
    evaluation = {"event": "eval", "time": 0, "step": sample_step, "val_loss": 2.7,
                  "val_bpb": 0.9, "is_best": True, "sample": "Once upon a time there was a cat."}
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps(event) + "\n" for event in [*steps, evaluation]))


async def test_the_chart_key_stays_clear_of_the_first_losses(app_home: AppHome) -> None:
    finished_run(app_home, "earlier", 600)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        lines = chart(app).splitlines()
        key = [number for number, line in enumerate(lines) if "train" in line]
        assert key == [len(lines) - 1] and "valid" in lines[-1]  # under the axis, not inside


async def test_trainer_errors_are_shown(app_home: AppHome, tmp_path: Path) -> None:
    empty = tmp_path / "no-stories"
    empty.mkdir()
    finished_run(app_home, "earlier", 600)
    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        sample = app.screen.query_one("#sample-view")
        assert sample.border_title == "Sample at step 600"  # the earlier run is followed
        await replace_text(pilot, "data-dir", str(tmp_path / "missing"), paste=True)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert any("data directory not found" in m for m in notifications(app))
        assert [run.name for run in list_runs(app_home.runs)] == ["earlier"]

        await replace_text(pilot, "data-dir", str(empty), paste=True)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "failed" in stats(app), timeout=60, what="failure")
        assert "grain-train: error:" in stats(app)
        assert any("grain-train: error:" in m for m in notifications(app))
        assert sample.border_title == "Latest sample"  # not the earlier run's
        runs = app.screen.query_one("#run-select", Select)
        offered = [str(option.prompt) for option in runs.query_one(SelectOverlay).options]
        assert [name for name in offered if not name.endswith("(failed)")] == ["earlier"]
        assert str(runs.query_one("SelectCurrent #label").render()).endswith("(failed)")

        await replace_text(pilot, "extra-args", "--steps 3")  # set by the form, refused
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert any("--steps is set by the form" in m for m in notifications(app))
    assert not any(run.is_running() for run in list_runs(app_home.runs))
    assert os.listdir(app_home.runs)  # the failed run's log stays for the user to read
