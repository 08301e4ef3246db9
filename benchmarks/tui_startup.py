"""TUI startup: time from launching ``grain-tui`` to its first painted frame, headless.

Each run starts a fresh Python process (as the ``grain-tui`` command does) that imports
``tui.app``, runs ``GrainApp`` headless and exits on Textual's ``Ready`` event, which the
app receives once the DOM is mounted and the first frame has been displayed. The parent times
the launch to the moment the child reports that frame. Every run gets empty config, data and
cache folders, as on a first launch; the shipped model is in place. A bare ``python -c pass``
is timed too, to show how much of it is the interpreter itself.

    python benchmarks/tui_startup.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    ROOT,
    format_table,
    log,
    machine_info,
    median,
    write_result,
)

GOAL_SECONDS = 1.0
MARKER = "GRAIN_FIRST_FRAME"
CHILD = f"""
import time
start = time.perf_counter()
import inspect
from tui.app import GrainApp
imported = time.perf_counter()


class FirstFrame(GrainApp):
    _BASE_PATH = inspect.getfile(GrainApp)  # Textual resolves CSS_PATH next to this file

    def on_ready(self) -> None:
        print("{MARKER}", imported - start, time.perf_counter() - start, flush=True)
        self.exit()


FirstFrame().run(headless=True, size=(120, 40))
"""


def child_env(home: Path) -> dict[str, str]:
    """The environment of one run: this one, with fresh app folders under ``home``."""
    env = dict(os.environ)
    for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                      ("XDG_CACHE_HOME", "cache"), ("GRAIN_CACHE_DIR", "tokens")):
        env[name] = str(home / sub)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def launch_to_first_frame(timeout: float) -> dict[str, float]:
    """One cold launch: seconds to the first frame, and the child's own split of that time."""
    with tempfile.TemporaryDirectory(prefix="grain-tui-bench-") as home:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT,
                                env=child_env(Path(home)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first_frame = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(MARKER):
                    first_frame = time.perf_counter() - start
                    _, imports, in_child = line.split()
                    break
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"grain-tui did not exit within {timeout:.0f} s") from None
        exited = time.perf_counter() - start
    if first_frame is None or proc.returncode != 0:
        raise RuntimeError(f"grain-tui failed (exit code {proc.returncode}): {err[-2000:]}")
    return {"first_frame_s": first_frame, "child_imports_s": float(imports),
            "child_first_frame_s": float(in_child), "exit_s": exited}


def bare_python() -> float:
    """Seconds to start and stop a bare interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Time several cold launches; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed launches (median)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per launch")
    parser.add_argument("--smoke", action="store_true", help="one launch, no warm-up")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    machine = machine_info()
    if not args.smoke:
        log("warm-up launch (fills the OS file cache) ...")
        launch_to_first_frame(args.timeout)
    launches = []
    for i in range(runs):
        launches.append(launch_to_first_frame(args.timeout))
        log(f"launch {i + 1}/{runs}: first frame after {launches[-1]['first_frame_s']:.3f} s")
    interpreter = median([bare_python() for _ in range(3)])
    row: dict[str, Any] = {key: median([launch[key] for launch in launches])
                           for key in launches[0]}
    row.update({"runs": runs, "min_first_frame_s": min(x["first_frame_s"] for x in launches),
                "max_first_frame_s": max(x["first_frame_s"] for x in launches),
                "bare_python_s": interpreter,
                "meets_goal": row["first_frame_s"] < GOAL_SECONDS})
    columns = [("first_frame_s", "launch->first frame s"), ("min_first_frame_s", "min s"),
               ("max_first_frame_s", "max s"), ("child_imports_s", "imports s"),
               ("bare_python_s", "bare python s"), ("exit_s", "launch->exit s"),
               ("meets_goal", f"< {GOAL_SECONDS:.0f} s")]
    print(format_table([row], columns))
    notes = ["first_frame_s: launch of a fresh interpreter to Textual's Ready event (first "
             "frame displayed), headless at 120x40, empty app folders; medians over runs.",
             "child_imports_s: time the child spent importing tui.app (after interpreter "
             "start); child_first_frame_s: from the child's first line to the first frame."]
    settings = {"runs": runs, "smoke": args.smoke, "warm_up_launch": not args.smoke,
                "size": [120, 40], "goal_seconds": GOAL_SECONDS, "python": sys.executable}
    out = args.out or RESULTS / "tui_startup_cpu.json"
    write_result(out, "tui_startup", settings, [row], machine, notes)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
