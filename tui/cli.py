"""The ``grain-tui`` command's options: ``--inline`` (one story under the shell prompt) and
``--print-paths`` (where everything lives); without options :func:`tui.app.run` opens the
full-screen app.

Only ``--inline`` loads the model package's heavy parts; ``--print-paths`` starts no UI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from saga_model import GENRES, THEMES, TONES, SagaError

from . import paths
from .models import discover_models, holds_model, pick_model
from .prefs import load_preferences

_STORY_FLAGS = ("theme", "tone", "genre", "characters", "opening", "temperature", "top_p",
                "max_tokens", "seed", "model")


class _Parser(argparse.ArgumentParser):
    """Errors in one line on stderr, exit code 2, like the other commands."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = _Parser(
        prog="grain-tui", description="Grain de Saga's storyteller for the terminal. Without "
        "options it opens the full-screen app.")
    parser.add_argument("--inline", action="store_true",
                        help="write one story under the shell prompt, then exit")
    parser.add_argument("--print-paths", action="store_true",
                        help="print where the preferences, library, runs and models are")
    story = parser.add_argument_group("story (with --inline)")
    story.add_argument("--theme", help=f"one of: {', '.join(THEMES)}")
    story.add_argument("--tone", help=f"one of: {', '.join(TONES)}")
    story.add_argument("--genre", help=f"one of: {', '.join(GENRES)}")
    story.add_argument("--characters", help='names, comma-separated, e.g. "Zara, Milo"')
    story.add_argument("--opening", help="the first words of the story")
    story.add_argument("--temperature", type=float)  # left out: saga_model's defaults
    story.add_argument("--top_p", type=float)
    story.add_argument("--max_tokens", type=int)
    story.add_argument("--seed", type=int, help="the same seed and settings give the same story")
    story.add_argument("--model", type=Path, help="a model folder or training run (default: "
                       "the model chosen in the app, else the shipped one)")
    return parser


def print_paths(out: TextIO) -> None:
    """Where the app keeps its files, and the models it can use."""
    rows = [("config", paths.config_dir()), ("preferences", paths.prefs_file()),
            ("data", paths.data_dir()), ("library", paths.library_file()),
            ("runs", paths.runs_dir()), ("exports", paths.exports_dir())]
    models = discover_models(paths.runs_dir())
    rows += [(f"model: {choice.label}", choice.path) for choice in models]
    width = max(len(name) for name, _ in rows)
    for name, path in rows:
        print(f"{name:<{width}}  {path}", file=out)
    if not models:
        print(f"{'models':<{width}}  none yet (train one in the app, F3)", file=out)


def run_inline(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Write one story in an inline app, then print it (errors as the command's errors)."""
    from .inline import InlineStoryApp
    from .session import StoryJob, new_story

    try:
        request, options = new_story(args.theme, args.tone, args.genre, args.characters,
                                     args.opening, seed=args.seed,
                                     temperature=args.temperature, top_p=args.top_p,
                                     max_tokens=args.max_tokens)
    except SagaError as exc:
        parser.error(str(exc))
    if args.model is not None:
        model: Path | None = args.model.expanduser()
        if not holds_model(model):
            parser.error(f"no model in {args.model} (expected model.safetensors)")
    else:
        preferred = load_preferences(paths.prefs_file()).prefs.model
        model = pick_model(discover_models(paths.runs_dir()), preferred)[1]
        if model is None:
            parser.error("there is no model yet: train one in grain-tui (F3) or pass --model")
    app = InlineStoryApp(StoryJob(request, options, model, model.name))
    text = app.run(inline=True) or ""
    if app.error:
        print(f"grain-tui: error: {app.error}", file=sys.stderr)
        return 1
    print(_for_terminal(text.strip()) if sys.stdout.isatty() else text.strip())
    print(f"(seed {options.seed}: --seed {options.seed} tells it again)", file=sys.stderr)
    return 0


def _for_terminal(text: str) -> str:
    """The story wrapped at word boundaries to the terminal's width."""
    width = shutil.get_terminal_size().columns
    return "\n".join(textwrap.fill(line, width) if line.strip() else ""
                     for line in text.splitlines())


def main(argv: Sequence[str] | None = None) -> int | None:
    """Carry out ``grain-tui``'s options in ``argv``; returns the exit status, or ``None`` when
    there are none and the full-screen app should open (:func:`tui.app.run` opens it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_paths:
        print_paths(sys.stdout)
        return 0
    if args.inline:
        return run_inline(parser, args)
    given = [f"--{name}" for name in _STORY_FLAGS
             if getattr(args, name) != parser.get_default(name)]
    if given:
        verb = "needs" if len(given) == 1 else "need"
        parser.error(f"{', '.join(given)} {verb} --inline (the app has its own form)")
    return None
