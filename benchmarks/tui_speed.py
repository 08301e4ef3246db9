"""A story shown by the TUI against the same story printed by the CLI: tokens/s and first token.

Both paths run in this one process, on the same model (the shipped one), the same request and
the same seeds, alternating story by story so that both see the same machine load:

* ``cli``: what ``grain-generate`` does with each piece (``stream_story``; every piece is
  written and flushed to a pipe, here ``os.devnull``). First token: from the call to the first
  piece; tokens/s: tokens / time to the last piece, which ``grain-generate --stats`` prints.
* ``tui``: ``GrainApp`` run headless by Textual's Pilot at 80x24 (the whole app: form, worker
  thread, story session, messages, story pane, status line, layout and rendering; only the
  bytes to a real terminal are left out). The seed is typed into the form and ctrl+g pressed.
  First token: from the key press to the first text in the story pane; tokens/s: the figure
  the status line shows when the story is done, and also tokens / time from the key press
  until the whole story is in the pane (``tui wall``).

    python benchmarks/tui_speed.py                 # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, format_table, log, machine_info, median, write_result

GOAL_RATIO = 0.9
SIZE = (80, 24)
CHARACTERS = "Zara, Milo"


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
    """Times the app: the key press, the first text in the story pane, the last piece."""

    def __init__(self) -> None:
        self.pressed = 0.0
        self.first: float | None = None
        self.last = 0.0

    def install(self) -> None:
        """Wrap the story pane's methods that put text on screen (the app is unchanged)."""
        from tui.widgets.story_view import StoryView

        for name in ("append", "append_pieces"):
            original = getattr(StoryView, name, None)
            if original is not None:
                setattr(StoryView, name, self._timed(original))

    def _timed(self, original: Any) -> Any:
        def timed(view: Any, *args: Any) -> Any:
            result = original(view, *args)
            now = time.perf_counter()
            if view.id == "story-view" and view.text:
                if self.first is None:
                    self.first = now
                self.last = now
            return result

        return timed


async def tui_stories(seeds: list[int], max_tokens: int, clock: TuiClock,
                      cli: Any) -> list[tuple[dict[str, float], dict[str, float]]]:
    """For each seed: the CLI's story, then the same story in the app (interleaved)."""
    from textual.widgets import Input

    from tui.app import GrainApp
    from tui.widgets.generation_status import GenerationStatus

    app = GrainApp()
    pairs = []
    async with app.run_test(size=SIZE) as pilot:
        status = app.screen.query_one(GenerationStatus)

        async def wait(condition: Any, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not finish: {status.render()}")
                await asyncio.sleep(0.02)  # not pilot.pause: it works the app's loop itself

        await wait(lambda: "ready" in str(status.render()))
        for field, value in (("characters", CHARACTERS), ("max_tokens", str(max_tokens))):
            app.screen.query_one(f"#{field}", Input).value = value
        for seed in seeds:
            cli_row = cli(seed)
            app.screen.query_one("#seed", Input).value = str(seed)
            clock.first = None
            await pilot.pause()
            clock.pressed = time.perf_counter()
            await pilot.press("ctrl+g")
            await wait(lambda: re.match(r"(done|max length) ", str(status.render())))
            shown = str(status.render())
            tokens = int(re.search(r"(\d+) tokens?", shown).group(1))
            assert clock.first is not None
            pairs.append((cli_row, {
                "first_token_s": clock.first - clock.pressed, "tokens": tokens,
                "tokens_per_sec": float(re.search(r"(\d+)/s", shown).group(1)),
                "wall_tokens_per_sec": tokens / (clock.last - clock.pressed)}))
            log(f"seed {seed}: cli {cli_row['tokens_per_sec']:.0f}/s, tui "
                f"{pairs[-1][1]['tokens_per_sec']:.0f}/s shown, "
                f"{pairs[-1][1]['wall_tokens_per_sec']:.0f}/s wall, {tokens} tokens")
    return pairs


def summary(path: str, rows: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of one path's stories."""
    row: dict[str, Any] = {"path": path, "stories": len(rows),
                           "tokens": median([r["tokens"] for r in rows]),
                           "first_token_ms": 1000 * median([r["first_token_s"] for r in rows]),
                           "tokens_per_sec": median([r["tokens_per_sec"] for r in rows])}
    if "wall_tokens_per_sec" in rows[0]:
        row["wall_tokens_per_sec"] = median([r["wall_tokens_per_sec"] for r in rows])
    return row


def main(argv: list[str] | None = None) -> int:
    """Time both paths on the same seeds; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="stories per path")
    parser.add_argument("--max_tokens", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="two short stories per path")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    seeds = list(range(100, 102 if args.smoke else 100 + args.seeds))
    max_tokens = 40 if args.smoke else args.max_tokens
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="grain-tui-speed-") as home:
        for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
            os.environ[name] = str(Path(home) / sub)  # fresh app folders, the shipped model
        import saga_model

        model, tokenizer = saga_model.load_model(saga_model.shipped_model())
        clock = TuiClock()
        clock.install()
        cli_story(model, tokenizer, seeds[0], max_tokens)  # warm-up (first decoder, caches)
        pairs = asyncio.run(tui_stories(
            seeds, max_tokens, clock, lambda seed: cli_story(model, tokenizer, seed, max_tokens)))
    cli_row, tui_row = (summary(path, [pair[i] for pair in pairs])
                        for i, path in enumerate(("cli", "tui")))
    ratios = [t["tokens_per_sec"] / c["tokens_per_sec"] for c, t in pairs]
    wall = [t["wall_tokens_per_sec"] / c["tokens_per_sec"] for c, t in pairs]
    tui_row.update({"vs_cli": median(ratios), "wall_vs_cli": median(wall),
                    "meets_goal": median(ratios) >= GOAL_RATIO})
    columns = [("path", "path"), ("stories", "stories"), ("tokens", "tokens (median)"),
               ("first_token_ms", "first token ms"), ("tokens_per_sec", "tokens/s shown"),
               ("wall_tokens_per_sec", "tokens/s key to last piece"), ("vs_cli", "vs CLI"),
               ("wall_vs_cli", "wall vs CLI")]
    print(format_table([cli_row, tui_row], columns))
    notes = ["Same process, model (shipped), request (characters Zara, Milo) and seeds; the "
             "CLI and TUI story of each seed run one after the other; medians over stories.",
             "tui: GrainApp headless under Pilot at 80x24; tokens/s shown is the status "
             "line's figure when done; first token and wall tokens/s run from the ctrl+g key "
             "press to the story pane. Bytes to a real terminal are not included.",
             f"vs_cli: median over seeds of the TUI's shown tokens/s over the CLI's; goal >= "
             f"{GOAL_RATIO}."]
    settings = {"seeds": seeds, "max_tokens": max_tokens, "smoke": args.smoke,
                "size": list(SIZE), "characters": CHARACTERS, "goal_ratio": GOAL_RATIO}
    out = args.out or RESULTS / "tui_speed_cpu.json"
    write_result(out, "tui_speed", settings, [cli_row, tui_row], machine, notes,
                 stories=[{"seed": seed, "cli": c, "tui": t} for seed, (c, t) in
                          zip(seeds, pairs, strict=True)])
    log(f"wrote {out}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
