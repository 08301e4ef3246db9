"""Where one MLX training step spends its time: ablations of the project's step on the GPU.

``train_throughput.py`` compares MLX with PyTorch in the training loop. This script times the
project's compiled step (``build_train_step``) next to variants that each leave one part out
or do it another way, all on the same model and on batches already on the device, so that
the differences are device time:

* ``step``: the project's step (forward, loss, backward, clipping, AdamW; on a CUDA GPU with
  the project's kernels: the fused loss of ``saga_model.head_loss``, ``saga_model.gelu``,
  ``saga_model.rms_norm``, ``saga_model.embedding``, ``saga_model.rotary``,
  ``saga_model.attention`` and ``saga_model.fused_optimizer``);
* ``no CUDA kernels of ours``: every one of those modules on its portable path (what CPUs and
  Metal run);
* ``loss by autodiff``, ``GELU in MLX operations``, ``RMSNorm by mx.fast.rms_norm``,
  ``embedding in MLX operations``, ``optimizer by mlx.optimizers``: one module on its
  portable path (the norms with MLX's residual additions before them);
* ``residual adds by MLX``: the norms' kernels without the residual additions of
  ``saga_model.rms_norm.fused_residual_norms`` (MLX adds the stream and its gradients);
* ``attention by the heads kernel and mx.fast (cuDNN)``: the projection split into heads and
  turned by ``saga_model.rotary``'s kernels, then cuDNN's attention; ``heads by split and
  mx.fast.rope, attention by cuDNN``: both on their portable paths;
* ``GELU of nn.gelu_approx``: ``nn.gelu_approx`` (a power for the cube, autodiff's
  derivative) in place of the model's ``gelu_approx``;
* ``no optimizer``: the step without the AdamW update;
* ``forward + loss``: no backward either;
* ``forward, no head``: the transformer to its last hidden state (no logits, no loss);
* ``no attention``: the attention replaced by its values (an ablation: not a model anyone
  would train);
* PyTorch's step (``torch_reference``, compiled, bf16 autocast) in the same run.

With ``--profile`` (and PyTorch installed) the JSON also lists the GPU kernels of the step
and of the step without the project's kernels, by time per step.

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
from saga_model import cuda as cuda_module
from saga_model import embedding as embedding_module
from saga_model import model as model_module
from saga_model import train as train_module
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.gelu import ops_gelu
from saga_model.model import StoryModel
from saga_model.train import build_train_step, make_optimizer, training_loss

Loss = Callable[[StoryModel, mx.array], mx.array]


def no_head_loss(model: StoryModel, batch: mx.array) -> mx.array:
    """A scalar from the last hidden states only."""
    return model.hidden_states(batch[:, :-1]).astype(mx.float32).mean()


def values_only(q: mx.array, k: mx.array, v: mx.array, *_: Any) -> mx.array:
    """Attention ablated: each position gets its own value vector (B, L, H * D)."""
    batch, heads, length, head_dim = v.shape
    return v.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)


def projection_values(projection: mx.array, *_: Any) -> mx.array:
    """:func:`values_only` for the attention that reads the fused projection (B, L, 3 * H * D)."""
    return projection[..., 2 * projection.shape[-1] // 3:]


@contextmanager
def patched(patches: tuple[Patch, ...]) -> Iterator[None]:
    """Run with each ``owner.attribute`` replaced (``patches`` of ``(owner, attribute,
    value)``)."""
    originals = [(owner, attribute, getattr(owner, attribute))
                 for owner, attribute, _ in patches]
    for owner, attribute, value in patches:
        setattr(owner, attribute, value)
    try:
        yield
    finally:
        for owner, attribute, value in originals:
            setattr(owner, attribute, value)


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


Patch = tuple[Any, str, Any]

#: Each CUDA kernel module's switch back to its portable path (CPUs, Metal).
PORTABLE: dict[str, Patch] = {
    "loss": (train_module, "fused_head_loss_available", lambda *_: False),
    "GELU": (model_module, "gelu_approx", ops_gelu),
    "RMSNorm": (model_module, "fused_rms_norm_available", lambda *_: False),
    "residual adds": (model_module, "fused_residual_norms_available", lambda *_: False),
    "embedding": (embedding_module, "fused_embedding_available", lambda *_: False),
    "optimizer": (train_module, "fused_adamw_available", lambda *_: False),
    "heads": (model_module, "fused_heads_available", lambda *_: False),
    "attention": (model_module, "flash_attention_available", lambda *_: False),
}

#: name -> (loss, step mode, patches while tracing); None loss: the project's own step.
VARIANTS: dict[str, tuple[Loss | None, str, tuple[Patch, ...]]] = {
    "step": (None, "update", ()),
    "no CUDA kernels of ours": (None, "update", ((cuda_module, "kernels_enabled", False),)),
    "loss by autodiff": (None, "update", (PORTABLE["loss"],)),
    "GELU in MLX operations": (None, "update", (PORTABLE["GELU"],)),
    "GELU of nn.gelu_approx": (None, "update", ((model_module, "gelu_approx",
                                                 nn.gelu_approx),)),
    "RMSNorm by mx.fast.rms_norm": (None, "update", (PORTABLE["RMSNorm"],
                                                     PORTABLE["residual adds"])),
    "residual adds by MLX": (None, "update", (PORTABLE["residual adds"],)),
    "embedding in MLX operations": (None, "update", (PORTABLE["embedding"],)),
    "heads by split and mx.fast.rope, attention by cuDNN": (
        None, "update", (PORTABLE["heads"], PORTABLE["attention"])),
    "attention by the heads kernel and mx.fast (cuDNN)": (None, "update",
                                                          (PORTABLE["attention"],)),
    "optimizer by mlx.optimizers": (None, "update", (PORTABLE["optimizer"],)),
    "no optimizer": (training_loss, "grad", ()),
    "forward + loss": (training_loss, "forward", ()),
    "forward, no head": (no_head_loss, "forward", ()),
    "no attention": (None, "update", ((model_module, "flash_attention", projection_values),
                                      (model_module, "sdpa_attention", values_only))),
}
#: Variants whose GPU kernels ``--profile`` lists.
PROFILED = ("step", "no CUDA kernels of ours")


def prepare_variant(name: str, cfg: ModelConfig, batch_size: int, precision: str,
                    batches: Batches) -> tuple[Callable[[int], None], Callable[[], None]]:
    """``run_step(index)`` and ``sync()`` of one variant, on batches resident on the device."""
    loss, mode, patches = VARIANTS[name]
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
    if loss is None:
        step, state = build_train_step(model, optimizer, train_cfg.grad_clip)
    else:
        step, state = make_step(model, optimizer, loss, train_cfg.grad_clip, mode)

    def run_step(index: int) -> None:
        with patched(patches):
            out = step(resident[index % len(resident)])
        mx.async_eval(state, out)

    return run_step, lambda: mx.eval(state)


def profile_kernels(torch: Any, run_step: Callable[[int], None], sync: Callable[[], None],
                    steps: int = 10, top: int = 25) -> list[dict[str, Any]]:
    """The ``top`` GPU kernels of ``steps`` warm steps by total time, per step (CUPTI through
    ``torch.profiler``, which records every kernel of the process, MLX's included)."""
    from torch.profiler import ProfilerActivity, profile

    for index in range(3):
        run_step(index)
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for index in range(steps):
            run_step(index)
        sync()
        mx.synchronize()
    kernels = []
    for event in prof.key_averages():
        micros = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if micros:
            kernels.append({"kernel": event.key[:160], "ms_per_step": micros / 1e3 / steps,
                            "calls_per_step": event.count / steps})
    kernels.sort(key=lambda k: -k["ms_per_step"])
    total = sum(k["ms_per_step"] for k in kernels)
    return [{"kernel": "(all kernels)", "ms_per_step": total,
             "calls_per_step": sum(k["calls_per_step"] for k in kernels)}, *kernels[:top]]


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
    parser.add_argument("--profile", action="store_true",
                        help="also list the GPU kernels of some variants (needs PyTorch)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check that the script works")
    parser.add_argument("--variants", nargs="+", choices=[*VARIANTS, "pytorch step"],
                        help="time only these (default: every variant and PyTorch's step)")
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
                "variants": args.variants or "all",
                "seq_len": seq, "precision": args.precision, "timed_seconds": args.seconds,
                "warmup": args.warmup}
    notes = [torch_note] if torch_note else []
    torch_bench = TorchBench(torch, True) if torch is not None else None
    rows: list[dict[str, Any]] = []
    kernels: dict[str, list[dict[str, Any]]] = {}
    for batch_size in args.batch_sizes:
        batches = Batches(cfg.vocab_size, seq, batch_size)
        names = [*VARIANTS, "pytorch step"] if torch_bench else list(VARIANTS)
        names = [name for name in names if name in (args.variants or names)]
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
                    run_step, sync = prepare_variant(name, cfg, batch_size, args.precision,
                                                     batches)
                    result = timed_run(run_step, sync, args.warmup, args.seconds)
                    if args.profile and torch is not None and name in PROFILED:
                        label = f"batch {batch_size}: {name}"
                        try:
                            kernels[label] = profile_kernels(torch, run_step, sync)
                        except Exception as exc:  # a profiler that cannot start here
                            kernels[label] = [{"error": f"{type(exc).__name__}: {exc}"[:300]}]
            except Exception as exc:  # one failed variant ends only its row
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                log(f"     error: {row['error']}")
                continue
            finally:
                release_memory(torch)
            row["step_ms"] = result["median_step_seconds"] * 1e3
            row["tokens_per_sec"] = batch_size * seq / result["median_step_seconds"]
            log(f"     {row['step_ms']:.2f} ms per step")
            write_result(args.out, "train_breakdown", settings, rows, machine, notes,
                         **({"kernels": kernels} if kernels else {}))
        step_ms = next((r.get("step_ms") for r in rows
                        if r["batch"] == batch_size and r["variant"] == "step"), None)
        for row in rows:
            if row["batch"] == batch_size and step_ms and row.get("step_ms"):
                row["vs_step"] = row["step_ms"] / step_ms
    write_result(args.out, "train_breakdown", settings, rows, machine, notes,
                     **({"kernels": kernels} if kernels else {}))
    print(format_table(rows, [("batch", "batch"), ("variant", "variant"),
                              ("step_ms", "ms/step"), ("vs_step", "of step"),
                              ("tokens_per_sec", "tokens/s"), ("error", "error")]))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
