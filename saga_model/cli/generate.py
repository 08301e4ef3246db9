"""``grain-generate``: stream a story to stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

from ..checkpoint import load_model
from ..errors import SagaError
from ..generate import stream_story
from ..labels import GENRES, THEMES, TONES
from ..paths import default_model_dir
from ..story_input import story_request
from .common import (
    ArgumentParser,
    add_sampling_arguments,
    run_command,
    sampling_values,
    version_text,
)

PROG = "grain-generate"


def build_parser() -> ArgumentParser:
    """The command's flags."""
    parser = ArgumentParser(prog=PROG, description="Tell a children's story.")
    parser.add_argument("--model_path", help="a model folder, checkpoint, .safetensors or .npz "
                        "(default: the model shipped with Grain de Saga)")
    parser.add_argument("--tokenizer_path", help="tokenizer.json (default: next to the model)")
    parser.add_argument("--theme", help=f"one of: {', '.join(THEMES)}")
    parser.add_argument("--tone", help=f"one of: {', '.join(TONES)}")
    parser.add_argument("--genre", help=f"one of: {', '.join(GENRES)}")
    parser.add_argument("--characters", help='names, comma-separated, e.g. "Alice,Bob"')
    parser.add_argument("--opening", "--prompt", dest="opening",
                        help="first words of the story, continued by the model")
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, help="same seed and settings -> same story")
    parser.add_argument("--num_stories", type=int, default=1)
    parser.add_argument("--stats", action="store_true", help="print speed figures to stderr")
    parser.add_argument("--list", action="store_true", help="list themes, tones and genres")
    parser.add_argument("--version", action="store_true", help="print versions and the BLAS in use")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grain-generate``."""
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_text(PROG))
        return 0
    if args.list:
        for name, values in (("themes", THEMES), ("tones", TONES), ("genres", GENRES)):
            print(f"{name}: {', '.join(values)}")
        return 0
    if args.num_stories < 1:
        raise SagaError("--num_stories must be at least 1")
    request, first = story_request(args.theme, args.tone, args.genre, args.characters,
                                   args.opening, seed=args.seed, **sampling_values(args))
    model, tokenizer = load_model(args.model_path or default_model_dir(), args.tokenizer_path)
    for index in range(args.num_stories):
        options = first if args.seed is None else replace(first, seed=args.seed + index)
        if index:
            print("\n")
        last = None
        for piece in stream_story(model, tokenizer, request, options):
            sys.stdout.write(piece.text)
            sys.stdout.flush()
            last = piece
        sys.stdout.write("\n")
        if args.stats and last is not None:
            print(f"[{last.n_tokens} tokens in {last.elapsed:.2f}s, "
                  f"{last.tokens_per_sec:.0f} tokens/s, finished: {last.finish_reason}]",
                  file=sys.stderr)
    return 0


def run() -> None:
    """Console-script entry point."""
    run_command(PROG, main)


if __name__ == "__main__":
    run()
