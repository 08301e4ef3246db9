"""Single-stream generation speed: time to first token and tokens/s of each decode path.

Backends, all in one run on the default MLX device (the CPU here):

* ``numpy``: :class:`saga_model.fast_decode.NumpyDecoder` (what ``stream_story`` uses on a CPU);
* ``mlx-cache``: :class:`saga_model.generate.MLXDecoder`, MLX with the KV cache;
* ``mlx-naive``: MLX without a cache, re-running the whole sequence for every token;
* ``mlx-lm``: mlx-lm's ``generate_step`` on a Llama of the same size (same width, depth,
  heads, vocabulary and parameter count; its SwiGLU MLP of width 256 has the FLOPs of our
  GELU MLP of width 384), when mlx-lm is installed. mlx-lm has no architecture with our
  plain GELU MLP, so it cannot load our weights: this row compares speed, not outputs;
* ``numpy-unpinned``: the NumPy decoder with its BLAS left multi-threaded (a diagnostic).

``numpy``, ``numpy-unpinned`` and ``mlx-cache`` are measured again, at the first prompt
length, while ``--busy`` other processes (default: one per core) spin, as when a training run
shares the machine with the app.

Our backends run through ``generate_tokens`` (sampling on the host, context shifts) with greedy
decoding; ``numpy`` and ``mlx-cache`` also run with the default ``SamplingOptions`` (what
users get). TTFT runs from the prompt's token ids (decoder construction included) to the
first token; decode tokens/s counts the tokens after the first. Medians over ``--runs``.

    python benchmarks/generate_speed.py                  # shipped model, ~1 minute here
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import saga_model  # isort: skip  # noqa: F401  (loads OpenBLAS for MLX: import before mlx)
import mlx.core as mx
import numpy as np

from benchmarks.common import RESULTS, format_table, log, machine_info, median, write_result
from saga_model import fast_decode
from saga_model.checkpoint import load_model
from saga_model.config import PRESETS
from saga_model.generate import (
    Decoder,
    MLXDecoder,
    SamplingOptions,
    generate_tokens,
    sample_token,
    sampling_processors,
)
from saga_model.model import StoryModel, count_parameters
from saga_model.paths import default_model_dir

TTFT_GOAL_MS = 50.0
TOKENS_PER_SEC_GOAL = 1000.0
#: A backend: (model, prompt ids) -> TTFT, tokens/s and the tokens it produced.
Runner = Callable[[StoryModel, list[int]], dict[str, Any]]


class NaiveMLXDecoder:
    """MLX without a KV cache: every token re-runs the model over the whole sequence."""

    def __init__(self, model: StoryModel) -> None:
        self.model = model
        self.context_length = model.config.context_length
        self._tokens: list[int] = []

    def prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        """Remember the prompt and return the next-token logits."""
        self._tokens = list(token_ids)
        return np.array(self.model(mx.array([self._tokens]))[0, -1])

    def step(self, token_id: int) -> np.ndarray:
        """Append a token and re-run everything."""
        self._tokens.append(token_id)
        return np.array(self.model(mx.array([self._tokens]))[0, -1])


def time_stream(tokens: Iterator[int], start: float) -> dict[str, Any]:
    """Consume a token stream, timing its first token and the rest."""
    first_at, count, produced = None, 0, []
    for token in tokens:
        count += 1
        produced.append(int(token))
        if first_at is None:
            first_at = time.perf_counter()
    end = time.perf_counter()
    if first_at is None:
        raise RuntimeError("no token was generated")
    decode = (count - 1) / (end - first_at) if count > 1 and end > first_at else None
    return {"ttft_ms": (first_at - start) * 1e3, "decode_tokens_per_sec": decode,
            "overall_tokens_per_sec": count / (end - start), "tokens": produced}


def ours(make: Callable[[StoryModel], Decoder], options: SamplingOptions) -> Runner:
    """A runner that builds a decoder and generates through ``generate_tokens``."""

    def run(model: StoryModel, prompt: list[int]) -> dict[str, Any]:
        start = time.perf_counter()
        decoder = make(model)
        return time_stream(generate_tokens(decoder, prompt, options), start)

    return run


def run_unpinned(options: SamplingOptions) -> Runner:
    """A runner for ``numpy-unpinned``: no BLAS library is pinned while it runs."""
    inner = ours(fast_decode.NumpyDecoder, options)

    def run(model: StoryModel, prompt: list[int]) -> dict[str, Any]:
        original = fast_decode._bundled_openblas
        fast_decode._bundled_openblas = lambda: ()
        try:
            return inner(model, prompt)
        finally:
            fast_decode._bundled_openblas = original

    return run


def mlx_lm_runner(model: StoryModel, max_tokens: int) -> tuple[Runner | None, str]:
    """mlx-lm's greedy generation on a same-size Llama, or None and why not."""
    try:
        from mlx_lm.generate import generate_step
        from mlx_lm.models import llama
    except ImportError as exc:
        return None, f"mlx-lm is not installed ({exc}); its row is skipped"
    cfg = model.config
    args = llama.ModelArgs(
        model_type="llama", hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
        intermediate_size=cfg.ffn_dim * 2 // 3, num_attention_heads=cfg.n_heads,
        rms_norm_eps=cfg.norm_eps, vocab_size=cfg.vocab_size, rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.context_length)
    mx.random.seed(0)
    lm = llama.Model(args)
    mx.eval(lm.parameters())
    lm_params, ours_params = count_parameters(lm), count_parameters(model)

    def run(_model: StoryModel, prompt: list[int]) -> dict[str, Any]:
        start = time.perf_counter()
        stream = (token for token, _ in generate_step(mx.array(prompt), lm,
                                                       max_tokens=max_tokens))
        return time_stream(stream, start)

    return run, (f"mlx-lm row: llama with {lm_params:,} parameters (ours: {ours_params:,}), "
                 "random weights, greedy on-device sampling, no context limit")


def sampler_cost(model: StoryModel, prompt: list[int], repeats: int) -> dict[str, float]:
    """Median microseconds the repetition processors and ``sample_token`` take on this model's
    logits, per option set."""
    logits = fast_decode.NumpyDecoder(model).prefill(prompt)
    rng = np.random.default_rng(0)
    cost = {}
    for name, options in (("greedy", SamplingOptions(temperature=0)),
                          ("default", SamplingOptions())):
        processors = sampling_processors(options)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            adjusted = logits.copy()
            for process in processors:
                process(prompt, adjusted)
            sample_token(adjusted, options, rng)
            times.append(time.perf_counter() - start)
        cost[name] = median(times) * 1e6
    return cost


def load(args: argparse.Namespace) -> tuple[StoryModel, str]:
    """The model to measure and a description of it."""
    if args.random:
        mx.random.seed(0)
        model = StoryModel(PRESETS[args.random])
        model.eval()
        mx.eval(model.parameters())
        return model, f"random weights, {args.random} preset"
    model, _ = load_model(args.model or default_model_dir())
    label = "the shipped model" if args.model is None else f"model {args.model}"
    return model, f"{label} ({count_parameters(model):,} parameters)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    parser.add_argument("--random", choices=sorted(PRESETS),
                        help="use random weights of this preset instead of a saved model")
    parser.add_argument("--prompt-lengths", default="16,256")
    parser.add_argument("--tokens", type=int, default=300, help="tokens to generate")
    parser.add_argument("--naive-tokens", type=int, default=48,
                        help="tokens for the no-cache loop (it is slow)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="spinning processes for the busy-machine rows (0: none)")
    parser.add_argument("--no-mlx-lm", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.random, args.prompt_lengths = args.random or "tiny", "8"
        args.tokens, args.naive_tokens, args.runs, args.busy = 6, 3, 1, 1
    args.prompt_lengths = [int(n) for n in args.prompt_lengths.split(",")]
    return args


@contextlib.contextmanager
def busy_machine(processes: int) -> Iterator[None]:
    """Keep ``processes`` other Python processes spinning (one per core, like a training run
    beside the app) for the duration of the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(processes)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait()


def measure(backends: Sequence[tuple[str, str, Runner]], model: StoryModel,
            prompt: list[int], runs: int, background: str,
            produced_by: dict[tuple[str, str, int, str], list[int]]) -> list[dict[str, Any]]:
    """One row per backend: median TTFT and tokens/s over ``runs`` after a warm-up run."""
    rows = []
    for name, sampling, run in backends:
        log(f"run  {name} ({sampling}), prompt {len(prompt)}, background: {background} ...")
        run(model, prompt[: min(len(prompt), 8)])  # warm-up: kernels, allocations
        results = [run(model, prompt) for _ in range(runs)]
        produced_by[name, sampling, len(prompt), background] = results[0]["tokens"]
        row = {
            "backend": name, "sampling": sampling, "prompt_tokens": len(prompt),
            "background": background, "new_tokens": len(results[0]["tokens"]), "runs": runs,
            "ttft_ms": median([r["ttft_ms"] for r in results]),
            "decode_tokens_per_sec": median([r["decode_tokens_per_sec"] or 0.0
                                             for r in results]),
            "overall_tokens_per_sec": median([r["overall_tokens_per_sec"] for r in results]),
        }
        rows.append(row)
        log(f"     TTFT {row['ttft_ms']:.1f} ms, {row['decode_tokens_per_sec']:,.0f} tok/s")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure every backend at every prompt length; print the table and write the JSON."""
    args = parse_args(argv)
    machine = machine_info()
    model, description = load(args)
    cfg = model.config
    greedy = SamplingOptions(temperature=0, max_tokens=args.tokens)
    default = SamplingOptions(max_tokens=args.tokens, seed=0)
    naive = SamplingOptions(temperature=0, max_tokens=args.naive_tokens)
    backends: list[tuple[str, str, Runner]] = [
        ("numpy", "greedy", ours(fast_decode.NumpyDecoder, greedy)),
        ("numpy", "default", ours(fast_decode.NumpyDecoder, default)),
        ("mlx-cache", "greedy", ours(MLXDecoder, greedy)),
        ("mlx-cache", "default", ours(MLXDecoder, default)),
        ("mlx-naive", "greedy", ours(NaiveMLXDecoder, naive)),
    ]
    notes = [f"model: {description}", "sampling 'default' = SamplingOptions() (temperature "
             "0.8, top_p 0.95) on the host; 'greedy' = temperature 0."]
    busy = [("numpy", "greedy", backends[0][2]), ("mlx-cache", "greedy", backends[2][2])]
    if fast_decode._bundled_openblas():
        unpinned = ("numpy-unpinned", "greedy", run_unpinned(greedy))
        backends.append(unpinned)
        busy.insert(1, unpinned)
        notes.append("numpy-unpinned: NumPy's bundled OpenBLAS left at its default thread "
                     "count (the decoder normally holds it to one thread while it runs)")
    if not args.no_mlx_lm:
        runner, note = mlx_lm_runner(model, args.tokens)
        notes.append(note)
        if runner is not None:
            backends.append(("mlx-lm", "greedy", runner))

    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    produced_by: dict[tuple[str, str, int, str], list[int]] = {}
    prompts = {n: rng.integers(64, cfg.vocab_size, n).tolist() for n in args.prompt_lengths
               if n < cfg.context_length}
    for length in sorted(set(args.prompt_lengths) - set(prompts)):
        notes.append(f"prompt length {length} skipped: the context is {cfg.context_length}")
    for prompt in prompts.values():
        rows += measure(backends, model, prompt, args.runs, "none", produced_by)
    busy_label = f"{args.busy} busy processes"
    if args.busy and prompts:
        notes.append(f"background '{busy_label}': as many processes spinning in Python "
                     "loops, as when a training run shares the machine")
        with busy_machine(args.busy):
            rows += measure(busy, model, next(iter(prompts.values())), args.runs, busy_label,
                            produced_by)
    for row in rows:
        key = (row["sampling"], row["prompt_tokens"], row["background"])
        expected = produced_by.get(("mlx-cache", *key))
        if row["backend"].startswith("numpy") and expected is not None:
            produced = produced_by[(row["backend"], *key)]
            shared = min(len(produced), len(expected))
            row["same_tokens_as_mlx"] = produced[:shared] == expected[:shared]
        if (row["backend"], row["sampling"], row["background"]) == ("numpy", "greedy", "none"):
            row["meets_goal"] = (row["decode_tokens_per_sec"] >= TOKENS_PER_SEC_GOAL
                                 and row["ttft_ms"] < TTFT_GOAL_MS)

    columns = [("backend", "backend"), ("sampling", "sampling"), ("prompt_tokens", "prompt"),
               ("background", "background"), ("new_tokens", "new"), ("ttft_ms", "TTFT ms"),
               ("decode_tokens_per_sec", "decode tok/s"),
               ("overall_tokens_per_sec", "overall tok/s"),
               ("same_tokens_as_mlx", "= mlx"), ("meets_goal", "goal")]
    print(format_table(rows, columns))
    sampler = sampler_cost(model, rng.integers(64, cfg.vocab_size, 16).tolist(),
                           20 if args.smoke else 300)
    print("sample_token per call: " + ", ".join(f"{k} {v:,.0f} us" for k, v in sampler.items()))
    notes.append("sampler_us: median time of the repetition processors and one sample_token "
                 "call on the model's logits "
                 "(host-side sampling, included in our backends' tokens/s)")
    settings = {"model": description, "vocab_size": cfg.vocab_size,
                "context_length": cfg.context_length, "prompt_lengths": args.prompt_lengths,
                "new_tokens": args.tokens, "naive_tokens": args.naive_tokens,
                "runs": args.runs, "busy_processes": args.busy, "smoke": args.smoke,
                "device": str(mx.default_device()),
                "goals": {"decode_tokens_per_sec": TOKENS_PER_SEC_GOAL,
                          "ttft_ms": TTFT_GOAL_MS}}
    device = "gpu" if mx.default_device().type == mx.DeviceType.gpu else "cpu"
    out = args.out or RESULTS / f"generate_speed_{device}.json"
    write_result(out, "generate_speed", settings, rows, machine, notes, sampler_us=sampler)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
