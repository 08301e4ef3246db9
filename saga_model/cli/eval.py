"""``grain-eval``: validation loss / bits per byte on text files, and a conditioning report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..checkpoint import load_model, write_json
from ..errors import SagaError
from ..evaluate import Adherence, conditioning_report, text_loss
from ..generate import SamplingOptions
from ..paths import default_model_dir
from .common import (
    ArgumentParser,
    StatusLine,
    check_writable_file,
    finite_float,
    run_command,
    version_text,
)

PROG = "grain-eval"


def build_parser() -> ArgumentParser:
    """The command's flags."""
    parser = ArgumentParser(prog=PROG, description="Measure a Grain de Saga model.")
    parser.add_argument("--model_path", help="model folder, checkpoint, .safetensors or .npz "
                        "(default: the shipped model)")
    parser.add_argument("--tokenizer_path", help="tokenizer.json (default: next to the model)")
    parser.add_argument("--text", action="append", default=[], metavar="FILE",
                        help="report loss and bits per byte on the stories of FILE (repeatable)")
    parser.add_argument("--conditioning", type=int, metavar="N", default=0,
                        help="generate N stories per setting and report adherence")
    parser.add_argument("--max_tokens", type=int, default=300)
    parser.add_argument("--temperature", type=finite_float, default=SamplingOptions().temperature)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name_boost", type=finite_float, default=SamplingOptions().name_boost,
                        help="nudge towards requested names not used yet (0 = off)")
    parser.add_argument("--json", metavar="PATH", help="also write all figures as JSON")
    parser.add_argument("--version", action="store_true", help="print versions and the BLAS in use")
    return parser


def _adherence_table(rows: list[Adherence], per_setting: int) -> list[str]:
    lines = [f"conditioning: {per_setting} stories per setting (keyword rules of "
             "saga_model.labels)",
             f"{'field':<11}{'value':<16}{'requested':>10}{'not requested':>15}"
             f"{'label = value':>15}"]
    for r in rows:
        label = "" if r.label_match is None else f"{r.label_match:.0%}"
        lines.append(f"{r.field:<11}{r.value:<16}{r.conditioned:>10.0%}"
                     f"{r.unconditioned:>15.0%}{label:>15}")
    styles = [r for r in rows if r.field != "characters"]
    names = [r for r in rows if r.field == "characters"]
    lines.append(
        f"characters requested appear in {_mean(r.conditioned for r in names):.0%} of stories; "
        f"theme/tone/genre keywords: {_mean(r.conditioned for r in styles):.0%} when "
        f"requested vs {_mean(r.unconditioned for r in styles):.0%} when not")
    return lines


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grain-eval``."""
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_text(PROG))
        return 0
    if not args.text and args.conditioning <= 0:
        raise SagaError("nothing to do: give --text FILE and/or --conditioning N")
    if args.json:
        check_writable_file(args.json, "--json")
    for path in args.text:
        if not Path(path).exists():
            raise SagaError(f"--text file not found: {path}")
    options = SamplingOptions(temperature=args.temperature, max_tokens=args.max_tokens,
                              seed=args.seed, name_boost=args.name_boost)
    model_path = args.model_path or default_model_dir()
    model, tokenizer = load_model(model_path, args.tokenizer_path)
    report: dict[str, object] = {"model": str(model_path)}
    scores = []
    for path in args.text:
        score = text_loss(model, tokenizer, path)
        print(f"{path}: {score.stories} stories, {score.tokens:,} tokens: loss "
              f"{score.loss:.4f} nats/token, {score.bits_per_byte:.4f} bits/byte")
        scores.append({"path": str(path), **asdict(score)})
    if scores:
        report["text"] = scores
    if args.conditioning > 0:
        status = StatusLine()
        rows = conditioning_report(model, tokenizer, args.conditioning, options,
                                   progress=status.progress)
        status.close()
        print("\n".join(_adherence_table(rows, args.conditioning)))
        report["conditioning"] = {"stories_per_setting": args.conditioning,
                                  "sampling": asdict(options),
                                  "rows": [asdict(r) for r in rows]}
    if args.json:
        write_json(Path(args.json), report)
    return 0


def run() -> None:
    """Console-script entry point."""
    run_command(PROG, main)


if __name__ == "__main__":
    run()
