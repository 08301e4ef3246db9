"""Regenerate the SVG screenshots of docs/user-guide.md (run from the repository root).

    python docs/images/make_screenshots.py

It works in a temporary home: trains a small run with ``grain-train`` (about a minute on a
laptop CPU), writes a story with the shipped model (or that run), saves it and a continued
version of it, and photographs each screen at 80x24 the way the app draws it in a terminal
(also the versions dialog and bedtime mode).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SIZE = (80, 24)


def train_example_run(runs: Path) -> None:
    """A short tiny-model run with evaluations, so the dashboard has something to show."""
    subprocess.run([sys.executable, "-m", "saga_model.cli.train",
                    "--data_dir", str(ROOT / "tests" / "fixtures" / "stories"),
                    "--output_dir", str(runs / "bedtime"), "--config", "tiny", "--steps", "300",
                    "--batch_size", "8", "--eval_every", "50", "--sample_tokens", "120",
                    "--quiet"], check=True)


async def wait_until_told(pilot: object, screen: object) -> None:
    """Wait for the Story screen to finish the story it is writing."""
    while not any(state in str(screen.status.render()) for state in ("done", "max length")):
        await pilot.pause(0.1)


async def shoot() -> None:
    """Drive the app with keys and save one SVG per screen."""
    from tui.app import GrainApp
    from tui.screens.story import StoryScreen

    app = GrainApp()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, StoryScreen)
        while "ready" not in str(screen.status.render()):
            await pilot.pause(0.1)
        for field, value in (("characters", "Zara, Milo"), ("seed", "7"), ("max_tokens", "200")):
            screen.query_one(f"#{field}").value = value
        await pilot.press("ctrl+g")
        await wait_until_told(pilot, screen)
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "story.svg"))
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "save-dialog.svg"))
        await pilot.press("enter")
        await pilot.press("ctrl+n")  # a continued version, saved too
        await wait_until_told(pilot, screen)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.press("f3")
        await pilot.pause(1.5)
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "training.svg"))
        await pilot.press("f4", "ctrl+f", *"Zara", "enter")
        await pilot.pause(0.5)
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "library.svg"))
        await pilot.press("v")
        await pilot.pause(0.5)
        app.save_screenshot(str(HERE / "versions.svg"))
        await pilot.press("escape", "f1")
        await pilot.pause(0.5)
        app.save_screenshot(str(HERE / "help.svg"))
        await pilot.press("escape", "f2", "f5", "ctrl+g")
        await pilot.pause(4)  # a few words in, at reading speed
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "bedtime.svg"))


def main() -> None:
    """Set up a temporary home, train, then take the screenshots."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["XDG_CONFIG_HOME"] = f"{home}/config"
        os.environ["XDG_DATA_HOME"] = f"{home}/data"
        os.environ["GRAIN_CACHE_DIR"] = f"{home}/cache"
        from tui.paths import runs_dir

        train_example_run(runs_dir())
        asyncio.run(shoot())


if __name__ == "__main__":
    main()
