"""A story shown by the TUI against the same story printed by the CLI: tokens/s and first token.

Both paths run in this one process, on the same model (the shipped one), the same request and
the same seeds, story by story (the CLI first for even seeds, the TUI first for odd ones) so
that both see the same machine load; the whole set of seeds is told ``--repeats`` times.

* ``cli``: what ``grain-generate`` does with each piece (``stream_story``; every piece is
  written and flushed to a pipe, here ``os.devnull``). First token: from the call to the first
  piece; tokens/s: what ``grain-generate --stats`` prints (tokens / time to the last piece).
* ``tui``: ``GrainApp`` run headless by Textual's Pilot at 80x24 (the whole app: form, worker
  thread, story session, messages, story pane, status line, footer, layout and rendering).
  Headless Textual skips turning each frame into terminal bytes; here every frame is turned
  into them as a terminal run does and written to ``os.devnull``. The seed is typed into the
  form and ctrl+g pressed. First token: from the key press to the first frame (written) that
  holds story text; tokens/s: tokens / time from the key press to the frame holding the last
  piece (what the user sees, the goal's figure), and the figure the status line shows when
  the story is done (the model's own, timed in its thread).

    python benchmarks/tui_speed.py                 # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, format_table, log, machine_info, median, write_result

GOAL_RATIO = 0.9
SIZE = (80, 24)
CHARACTERS = "Zara, Milo"
FINISHED = ("done", "max length")


def cli_story(model: Any, tokenizer: Any, seed: int, max_tokens: int) -> dict[str, float]:
    """One story through grain-generate's loop: first-token seconds, tokens, tokens/s."""
    import saga_model

    request, options = saga_model.story_request(characters=CHARACTERS, seed=seed,
                                                max_tokens=max_tokens)
    first = None
    last = None
    with open(os.devnull, "w") as sink:
        start = time.perf_counter()
        for piece in saga_model.stream_story(model, tokenizer, request, options):
            sink.write(piece.text)
            sink.flush()
            if first is None and piece.text:
                first = time.perf_counter() - start
            last = piece
    assert last is not None and first is not None
    return {"first_token_s": first, "tokens": last.n_tokens,
            "tokens_per_sec": last.tokens_per_sec}


class TuiClock:
    """Times the app from outside (the app is unchanged): the key press, the first and the
    last frame that show new story text, and the status line's last figures."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink  # where the frames' terminal bytes go
        self.pressed = 0.0
        self.ui_cpu = 0.0  # CPU time of the app's thread (the event loop) from the key press
        self.first: float | None = None
        self.last = 0.0
        self.ui_cpu_at_last = 0.0
        self.unseen = False  # story text came since the last frame
        self.shown = asyncio.Event()  # the story is done and a frame shows all of it
        self.status: tuple[str, int | None, float | None] = ("", None, None)

    def start(self) -> None:
        """The key is about to be pressed."""
        self.first, self.unseen, self.status = None, False, ("", None, None)
        self.shown.clear()
        self.ui_cpu = time.thread_time()
        self.pressed = time.perf_counter()

    @property
    def finished(self) -> bool:
        """The status line says the story is done and a frame shows all of it."""
        return self.status[0] in FINISHED and not self.unseen

    def install(self) -> None:
        """Wrap the methods that put story text in the pane, show the status and display a
        frame."""
        from textual.app import App
        from textual.widgets import Static

        from tui.widgets.generation_status import GenerationStatus
        from tui.widgets.story_view import StoryView

        clock = self
        append, display, show = StoryView.append, App._display, GenerationStatus.show

        def timed_append(view: Any, *args: Any) -> None:
            append(view, *args)
            if view.id == "story-view" and view.text:
                clock.unseen = True

        def timed_display(app: Any, screen: Any, renderable: Any) -> None:
            display(app, screen, renderable)
            if renderable is None or app._batch_count:
                return
            if hasattr(renderable, "render_segments"):  # a frame: its terminal bytes
                clock.sink.write(renderable.render_segments(app.console))
            if clock.unseen:
                clock.unseen = False
                clock.last = time.perf_counter()
                clock.ui_cpu_at_last = time.thread_time()
                if clock.first is None:
                    clock.first = clock.last
            if clock.finished:
                clock.shown.set()

        def timed_show(status: Static, state: str, n_tokens: int | None = None,
                       tokens_per_sec: float | None = None) -> None:
            show(status, state, n_tokens, tokens_per_sec)
            clock.status = (state, n_tokens, tokens_per_sec)
            if clock.finished:  # no new text since the last frame
                clock.shown.set()

        StoryView.append, App._display, GenerationStatus.show = \
            timed_append, timed_display, timed_show


async def tui_stories(seeds: list[int], repeats: int, max_tokens: int, clock: TuiClock,
                      cli: Any) -> list[dict[str, Any]]:
    """Each seed told by the CLI and by the app, one after the other, ``repeats`` times."""
    from textual.widgets import Input

    from tui.app import GrainApp

    app = GrainApp()
    stories = []
    async with app.run_test(size=SIZE) as pilot:

        deadline = time.monotonic() + 120
        while not clock.status[0].startswith("ready"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model did not load: {clock.status}")
            await asyncio.sleep(0.05)
        for field, value in (("characters", CHARACTERS), ("max_tokens", str(max_tokens))):
            app.screen.query_one(f"#{field}", Input).value = value
        for repeat in range(repeats):
            for seed in seeds:
                load = os.getloadavg()[0]
                cli_row = cli(seed) if seed % 2 == 0 else None
                app.screen.query_one("#seed", Input).value = str(seed)
                await pilot.pause()
                await asyncio.sleep(0.1)  # the frames of the new settings are out
                clock.start()
                await pilot.press("ctrl+g")
                try:  # an event, not polling: the loop's time is the app's
                    await asyncio.wait_for(clock.shown.wait(), 120)
                except TimeoutError:
                    raise RuntimeError(f"the app did not finish: {clock.status}") from None
                _, tokens, shown = clock.status
                assert clock.first is not None and tokens is not None and shown is not None
                await asyncio.sleep(0.2)  # the app's work after the story (the footer) is done
                cli_row = cli_row or cli(seed)
                tui_row = {"first_token_s": clock.first - clock.pressed, "tokens": tokens,
                           "tokens_per_sec": tokens / (clock.last - clock.pressed),
                           "status_tokens_per_sec": shown,
                           "ui_cpu_s": clock.ui_cpu_at_last - clock.ui_cpu}
                stories.append({"seed": seed, "repeat": repeat, "load_average_1m": load,
                                "cli": cli_row, "tui": tui_row})
                log(f"seed {seed}: cli {cli_row['tokens_per_sec']:.0f}/s, tui "
                    f"{tui_row['tokens_per_sec']:.0f}/s on screen ({shown:.0f}/s in the status "
                    f"line), first token {1000 * cli_row['first_token_s']:.0f} / "
                    f"{1000 * tui_row['first_token_s']:.0f} ms, {tokens} tokens, app thread "
                    f"{1000 * tui_row['ui_cpu_s']:.0f} ms CPU, load {load:.2f}")
    return stories


def summary(path: str, rows: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of one path's stories."""
    row: dict[str, Any] = {"path": path, "stories": len(rows),
                           "tokens": median([r["tokens"] for r in rows]),
                           "first_token_ms": 1000 * median([r["first_token_s"] for r in rows]),
                           "tokens_per_sec": median([r["tokens_per_sec"] for r in rows])}
    if "status_tokens_per_sec" in rows[0]:
        row["status_tokens_per_sec"] = median([r["status_tokens_per_sec"] for r in rows])
        row["ui_cpu_ms"] = 1000 * median([r["ui_cpu_s"] for r in rows])
    return row


def ratios(stories: list[dict[str, Any]], key: str = "tokens_per_sec") -> list[float]:
    """Per story: the TUI's ``key`` over the CLI's tokens/s."""
    return [story["tui"][key] / story["cli"]["tokens_per_sec"] for story in stories]


def main(argv: list[str] | None = None) -> int:
    """Time both paths on the same seeds; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="stories per path and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="times the seeds are told")
    parser.add_argument("--max_tokens", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="two short stories per path")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    seeds = list(range(100, 102 if args.smoke else 100 + args.seeds))
    repeats = 1 if args.smoke else args.repeats
    max_tokens = 40 if args.smoke else args.max_tokens
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="grain-tui-speed-") as home, \
            open(os.devnull, "w") as sink:
        for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
            os.environ[name] = str(Path(home) / sub)  # fresh app folders, the shipped model
        import saga_model

        model, tokenizer = saga_model.load_model(saga_model.shipped_model())
        clock = TuiClock(sink)
        clock.install()
        cli_story(model, tokenizer, seeds[0], max_tokens)  # warm-up (first decoder, caches)
        stories = asyncio.run(tui_stories(
            seeds, repeats, max_tokens, clock,
            lambda seed: cli_story(model, tokenizer, seed, max_tokens)))
    cli_row, tui_row = (summary(path, [story[path] for story in stories])
                        for path in ("cli", "tui"))
    by_repeat = [[story for story in stories if story["repeat"] == repeat]
                 for repeat in range(repeats)]
    vs_cli = median(ratios(stories))
    tui_row.update({
        "vs_cli": vs_cli,
        "status_vs_cli": median(ratios(stories, "status_tokens_per_sec")),
        "vs_cli_by_repeat": [median(ratios(part)) for part in by_repeat],
        "load_average_1m_by_repeat": [median([s["load_average_1m"] for s in part])
                                      for part in by_repeat],
        "meets_goal": vs_cli >= GOAL_RATIO})
    columns = [("path", "path"), ("stories", "stories"), ("tokens", "tokens (median)"),
               ("first_token_ms", "first token ms"), ("tokens_per_sec", "tokens/s on screen"),
               ("status_tokens_per_sec", "tokens/s status line"),
               ("ui_cpu_ms", "app thread CPU ms"), ("vs_cli", "vs CLI"),
               ("status_vs_cli", "status vs CLI")]
    print(format_table([cli_row, tui_row], columns))
    log("vs CLI by repeat: " + ", ".join(f"{r:.3f}" for r in tui_row["vs_cli_by_repeat"])
        + "; load average by repeat: "
        + ", ".join(f"{r:.2f}" for r in tui_row["load_average_1m_by_repeat"]))
    notes = ["Same process, model (shipped), request (characters Zara, Milo) and seeds; the "
             "CLI and TUI story of each seed run one after the other; medians over stories.",
             "cli: tokens/s as grain-generate --stats prints it; first token from the call to "
             "the first piece.",
             "tui: GrainApp headless under Pilot at 80x24, every frame turned into terminal "
             "bytes (written to /dev/null); first token and tokens/s on screen run from the "
             "ctrl+g key press to the frame that shows the first / last piece; tokens/s status "
             "line is the figure the app shows when done (timed in the model's thread).",
             f"vs_cli: median over stories of the TUI's tokens/s on screen over the CLI's "
             f"(status_vs_cli: of the status line's); goal >= {GOAL_RATIO}."]
    settings = {"seeds": seeds, "repeats": repeats, "max_tokens": max_tokens,
                "smoke": args.smoke, "size": list(SIZE), "characters": CHARACTERS,
                "goal_ratio": GOAL_RATIO}
    out = args.out or RESULTS / "tui_speed_cpu.json"
    write_result(out, "tui_speed", settings, [cli_row, tui_row], machine, notes,
                 stories=stories)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
