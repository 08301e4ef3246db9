"""Where one MLX training step spends its time: ablations of the project's step on the GPU.

``train_throughput.py`` shows MLX behind PyTorch at large batches. This script times the
project's compiled step (``build_train_step``) next to variants that each leave one part out
or do it another way, all on the same model and on batches already on the device, so that
the differences are device time:

* ``step``: the project's step (forward, loss, backward, clipping, AdamW);
* ``no optimizer``: the same without the AdamW update;
* ``forward + loss``: no backward either;
* ``forward, no head``: the transformer to its last hidden state (no logits, no loss);
* ``loss on float32 logits``: the step with the loss taken on a float32 copy of the logits;
* ``loss on compute-dtype logits``: the step with the loss taken on the logits as the head
  computes them (bfloat16 here);
* ``no attention``: ``mx.fast.scaled_dot_product_attention`` replaced by its values
  (an ablation: not a model anyone would train);
* ``unfused attention``: the same attention written as ``softmax(q k^T + mask) v``;
* PyTorch's step (``torch_reference``, compiled, bf16 autocast) in the same run.

    PYTHONPATH=/tmp/site:. python3 benchmarks/train_breakdown.py --out $OUT/breakdown.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import saga_model  # isort: skip  # noqa: F401  (loads OpenBLAS for MLX: import before mlx)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from benchmarks.common import RESULTS, format_table, log, machine_info, write_result
from benchmarks.train_throughput import (
    Batches,
    Case,
    TorchBench,
    import_torch,
    release_memory,
    timed_run,
)
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.model import StoryModel
from saga_model.train import build_train_step, loss_terms, make_optimizer

Loss = Callable[[StoryModel, mx.array], mx.array]


def project_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """The training loss exactly as the project computes it."""
    nats, count = loss_terms(model, batch)
    return nats / count


def float32_logits_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """Cross-entropy on a float32 copy of the logits."""
    logits = model.logits(batch[:, :-1]).astype(mx.float32)
    return nn.losses.cross_entropy(logits, batch[:, 1:]).mean()


def compute_dtype_logits_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """Cross-entropy on the logits in the compute dtype, as they are."""
    logits = model.logits(batch[:, :-1])
    return nn.losses.cross_entropy(logits, batch[:, 1:]).astype(mx.float32).mean()


def no_head_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """A scalar from the last hidden states only."""
    return model.hidden_states(batch[:, :-1]).astype(mx.float32).mean()


def values_only(q: mx.array, k: mx.array, v: mx.array, **_: Any) -> mx.array:
    """Attention ablated: each position gets its own value vector."""
    return v


def unfused_attention(q: mx.array, k: mx.array, v: mx.array, *, scale: float,
                      mask: str | None = None) -> mx.array:
    """Causal softmax attention with plain matrix products."""
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if mask == "causal":
        length = q.shape[-2]
        future = mx.triu(mx.ones((length, length), dtype=mx.bool_), k=1)
        scores = mx.where(future, mx.array(-mx.inf, scores.dtype), scores)
    return mx.softmax(scores, axis=-1, precise=True) @ v


@contextmanager
def attention_as(function: Callable[..., mx.array] | None) -> Iterator[None]:
    """Run with ``mx.fast.scaled_dot_product_attention`` replaced by ``function``."""
    original = mx.fast.scaled_dot_product_attention
    if function is not None:
        mx.fast.scaled_dot_product_attention = function
    try:
        yield
    finally:
        mx.fast.scaled_dot_product_attention = original


def make_step(model: StoryModel, optimizer: optim.Optimizer, loss: Loss, grad_clip: float,
              mode: str) -> tuple[Callable[[mx.array], mx.array], list[Any]]:
    """A compiled step: ``mode`` "update" (like the project's), "grad" (no update) or
    "forward" (the loss only)."""
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: mx.array) -> mx.array:
        if mode == "forward":
            return loss(model, batch)
        value, grads = nn.value_and_grad(model, loss)(model, batch)
        grads, _ = optim.clip_grad_norm(grads, grad_clip)
        if mode == "update":
            optimizer.update(model, grads)
            return value
        return value + sum(g.sum() for _, g in tree_flatten(grads)) * 0  # keep the backward

    return step, state


#: name -> (loss, step mode, attention replacement); None loss: the project's own step.
VARIANTS: dict[str, tuple[Loss | None, str, Callable[..., mx.array] | None]] = {
    "step": (None, "update", None),
    "no optimizer": (project_loss, "grad", None),
    "forward + loss": (project_loss, "forward", None),
    "forward, no head": (no_head_loss, "forward", None),
    "loss on float32 logits": (float32_logits_loss, "update", None),
    "loss on compute-dtype logits": (compute_dtype_logits_loss, "update", None),
    "no attention": (None, "update", values_only),
    "unfused attention": (None, "update", unfused_attention),
}


def measure_variant(name: str, cfg: ModelConfig, batch_size: int, precision: str,
                    batches: Batches, warmup: int, seconds: float) -> dict[str, Any]:
    """Time one variant on batches resident on the device."""
    loss, mode, attention = VARIANTS[name]
    train_cfg = TrainConfig(batch_size=batch_size, precision=precision, steps=100_000)
    mx.random.seed(train_cfg.seed)
    model = StoryModel(cfg)
    model.compute_dtype = mx.bfloat16 if precision == "bfloat16" else mx.float32
    optimizer = make_optimizer(train_cfg)
    optimizer.init(model.trainable_parameters())
    mx.eval(model.parameters(), optimizer.state)
    model.train()
    resident = [mx.array(batches.get(i)) for i in range(8)]
    mx.eval(resident)
    with attention_as(attention):
        if loss is None:
            step, state = build_train_step(model, optimizer, train_cfg.grad_clip)
        else:
            step, state = make_step(model, optimizer, loss, train_cfg.grad_clip, mode)

        def run_step(index: int) -> None:
            out = step(resident[index % len(resident)])
            mx.async_eval(state, out)

        return timed_run(run_step, lambda: mx.eval(state), warmup, seconds)


def main(argv: list[str] | None = None) -> int:
    """Time every variant (and PyTorch) at each batch size; print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="seed", choices=sorted(PRESETS))
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--precision", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--seq_len", type=int, help="default: the config's context")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check that the script works")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_breakdown_gpu.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.config, args.batch_sizes, args.seq_len = "tiny", [2], 32
        args.precision, args.seconds, args.warmup = "float32", 0.1, 1
    base = PRESETS[args.config]
    seq = args.seq_len or base.context_length
    cfg = ModelConfig.from_dict({**base.to_dict(), "context_length": seq})
    torch, torch_note = import_torch(not args.no_torch)
    if torch is not None and mx.default_device().type == mx.DeviceType.gpu \
            and not torch.cuda.is_available():
        torch, torch_note = None, "PyTorch has no CUDA device here"
    machine = machine_info(torch)
    settings = {"smoke": args.smoke, "config": args.config, "batch_sizes": args.batch_sizes,
                "seq_len": seq, "precision": args.precision, "timed_seconds": args.seconds,
                "warmup": args.warmup}
    notes = [torch_note] if torch_note else []
    torch_bench = TorchBench(torch, True) if torch is not None else None
    rows: list[dict[str, Any]] = []
    for batch_size in args.batch_sizes:
        batches = Batches(cfg.vocab_size, seq, batch_size)
        names = [*VARIANTS, "pytorch step"] if torch_bench else list(VARIANTS)
        for name in names:
            row: dict[str, Any] = {"batch": batch_size, "variant": name}
            rows.append(row)
            log(f"run  batch {batch_size}: {name} ...")
            try:
                if name == "pytorch step":
                    assert torch_bench is not None
                    case = Case("torch", args.config, batch_size, args.precision)
                    result = torch_bench.measure(case, cfg, batches, args.warmup, args.seconds)
                else:
                    result = measure_variant(name, cfg, batch_size, args.precision, batches,
                                             args.warmup, args.seconds)
            except Exception as exc:  # one failed variant ends only its row
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                log(f"     error: {row['error']}")
                continue
            finally:
                release_memory(torch)
            row["step_ms"] = result["median_step_seconds"] * 1e3
            row["tokens_per_sec"] = batch_size * seq / result["median_step_seconds"]
            log(f"     {row['step_ms']:.2f} ms per step")
            write_result(args.out, "train_breakdown", settings, rows, machine, notes)
        step_ms = next((r.get("step_ms") for r in rows
                        if r["batch"] == batch_size and r["variant"] == "step"), None)
        for row in rows:
            if row["batch"] == batch_size and step_ms and row.get("step_ms"):
                row["vs_step"] = row["step_ms"] / step_ms
    write_result(args.out, "train_breakdown", settings, rows, machine, notes)
    print(format_table(rows, [("batch", "batch"), ("variant", "variant"),
                              ("step_ms", "ms/step"), ("vs_step", "of step"),
                              ("tokens_per_sec", "tokens/s"), ("error", "error")]))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
