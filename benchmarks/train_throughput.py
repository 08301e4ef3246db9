"""Training throughput: this project's MLX training step against an equivalent PyTorch model.

Both run in the same process on the same device, on the same batches (the project's
``sample_batch`` over a synthetic token stream):

* MLX: ``saga_model.train.build_train_step`` with ``make_optimizer`` (the compiled step of
  ``grain-train``), driven like ``run_training``'s loop (``mx.async_eval`` every step, a
  ``.item()`` every ``LOG_EVERY`` steps), in float32 and bfloat16 (``TrainConfig.precision``),
  on the batches of ``saga_model.train_batches.TrainingBatches`` as the trainer makes them (on
  a CUDA GPU: the token stream kept on the device, each step's window starts uploaded and
  the windows gathered there; elsewhere: made on the host and uploaded every step);
* PyTorch: ``benchmarks/torch_reference.py`` (same shapes and parameter count), forward and
  loss under ``torch.compile`` and bf16 autocast, gradient clipping, AdamW (fused on CUDA),
  on the host's batches uploaded every step.

Steady state only: warm-up steps (compilation) first, then windows of timed steps for about
``--seconds`` (``LOG_EVERY`` steps and one sync per window, or one step per window when steps
are slow); tokens/s comes from the median window, the mean is recorded too. Model FLOPs per
token are ``6 * N_matmul + 12 * n_layers * T * d_model`` (``N_matmul``: parameters used in matrix
products, i.e. all but the embedding table unless the head is tied to it); MFU divides
achieved model FLOP/s by the datasheet dense bf16 peak on known GPUs, else by a measured
matrix-product peak (both are recorded). On the GPU, extra MLX runs of the seed model show
where time goes: ``device`` (the same few batches already on the device: the reference for
the loop's batches), ``host batches`` (every step's batch made on the host and uploaded, as
the trainer did before ``TrainingBatches`` and still does on CPUs and Metal) and ``sync`` (a
synchronisation every step); on the
CPU, bfloat16 is measured for the first shape only (it is several times slower than float32
there, and the larger shape would not fit the time box).

    python benchmarks/train_throughput.py --device cpu            # here: ~4 minutes
    PYTHONPATH=/tmp/site:. python3 benchmarks/train_throughput.py --device gpu \\
        --out "$OUT/train_gpu.json"                                # H100/H200: ~4 minutes
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import saga_model  # isort: skip  # noqa: F401  (loads OpenBLAS for MLX: import before mlx)
import mlx.core as mx
import numpy as np

from benchmarks.common import RESULTS, format_table, log, machine_info, median, write_result
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.data import TokenSplit, sample_batch, window_starts
from saga_model.model import StoryModel, count_parameters
from saga_model.train import LOG_EVERY, build_train_step, make_optimizer
from saga_model.train_batches import TrainingBatches

FLOPS_FORMULA = "6 * N_matmul + 12 * n_layers * seq_len * d_model per token (fwd + bwd)"
#: Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts unless named).
DATASHEET_BF16 = (("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100 NVL", 835.5e12),
                  ("H100", 989.4e12), ("A100", 312.0e12))

PROFILES: dict[str, dict[str, Any]] = {
    "gpu": {"configs": ["seed", "4x"], "batch_sizes": [32, 128, 256],
            "mlx_precisions": ["float32", "bfloat16"],
            "mlx_precisions_other_configs": ["float32", "bfloat16"],
            "torch_precisions": ["bfloat16"],
            "seq_len": None, "seconds": 2.0, "warmup": 3, "max_seconds": 200,
            "diagnose_batch": 128, "diagnose_precision": "bfloat16"},
    "cpu": {"configs": ["seed", "4x"], "batch_sizes": [4],
            "mlx_precisions": ["float32", "bfloat16"],
            "mlx_precisions_other_configs": ["float32"],
            "torch_precisions": ["float32", "bfloat16"],
            "seq_len": None, "seconds": 4.0, "warmup": 2, "max_seconds": 240,
            "diagnose_batch": None, "diagnose_precision": "float32"},
    "smoke": {"configs": ["tiny"], "batch_sizes": [2], "mlx_precisions": ["float32"],
              "mlx_precisions_other_configs": ["float32"], "torch_precisions": ["float32"],
              "seq_len": 32, "seconds": 0.2, "warmup": 1, "max_seconds": 60,
              "diagnose_batch": 2, "diagnose_precision": "float32"},
}


@dataclass
class Case:
    """One measurement: which framework, model shape, batch size, precision and variant."""

    framework: str
    config: str
    batch: int
    precision: str
    variant: str = "loop"


class Batches:
    """Training batches of a synthetic token stream: on the host (``get``, for PyTorch) and
    as ``run_training`` makes them (``training``)."""

    def __init__(self, vocab_size: int, context: int, batch_size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n_tokens = max(1 << 20, 64 * batch_size * (context + 1))
        tokens = rng.integers(1, vocab_size, n_tokens, dtype=np.uint16)
        self.split = TokenSplit(tokens=tokens, starts=np.arange(0, n_tokens, 300), n_bytes=0)
        self.starts = window_starts(self.split, context)
        self.batch_size, self.context = batch_size, context

    def get(self, step: int) -> np.ndarray:
        """The (batch, context + 1) int32 batch of ``step``, made on the host."""
        return sample_batch(self.split, self.starts, self.batch_size, self.context, 0, step)

    @functools.cached_property
    def training(self) -> TrainingBatches:
        """The same batches as the trainer makes them (on a CUDA GPU: gathered there)."""
        return TrainingBatches(self.split, self.context, self.batch_size, 0)

    @functools.cached_property
    def uploaded(self) -> TrainingBatches:
        """The same batches made on the host and uploaded every step (variant "host
        batches")."""
        return TrainingBatches(self.split, self.context, self.batch_size, 0, on_device=False)

    def host_ms(self, repeats: int = 20) -> float:
        """Median milliseconds the host spends making one batch."""
        times = []
        for step in range(repeats):
            start = time.perf_counter()
            self.get(step)
            times.append(time.perf_counter() - start)
        return median(times) * 1e3


def flops_per_token(cfg: ModelConfig, n_params: int, seq_len: int) -> float:
    """Model FLOPs of one trained token (see ``FLOPS_FORMULA``)."""
    table = cfg.vocab_size * cfg.d_model
    matmul_params = n_params - (0 if cfg.tie_embeddings else table)
    return 6.0 * matmul_params + 12.0 * cfg.n_layers * seq_len * cfg.d_model


def timed_run(run_step: Callable[[int], None], sync: Callable[[], None], warmup: int,
              seconds: float, min_windows: int = 3, max_steps: int = 1000
              ) -> dict[str, float]:
    """Warm up (the first step compiles), then time windows of steps for about ``seconds``.

    A window is ``LOG_EVERY`` steps closed by one sync (as ``run_training`` syncs every
    ``LOG_EVERY`` steps), or a single step when steps are slow (over 50 ms). The median
    window is the headline figure: on a shared machine it shrugs off bursts of other work.
    """
    start = time.perf_counter()
    run_step(0)
    sync()
    first = last = time.perf_counter() - start
    for step in range(1, max(warmup, 2)):
        start = time.perf_counter()
        run_step(step)
        sync()
        last = time.perf_counter() - start
    window = LOG_EVERY if last < 0.05 else 1
    windows = max(min_windows, int(seconds / (window * max(last, 1e-6))))
    windows = max(1, min(windows, max_steps // window))
    step, times = max(warmup, 2), []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(window):
            run_step(step)
            step += 1
        sync()
        times.append((time.perf_counter() - start) / window)
    return {"steps": windows * window, "window_steps": window, "seconds": sum(times) * window,
            "median_step_seconds": median(times), "mean_step_seconds": sum(times) / windows,
            "min_step_seconds": min(times), "max_step_seconds": max(times),
            "first_step_seconds": first}


def measure_mlx(case: Case, cfg: ModelConfig, batches: Batches, warmup: int, seconds: float
                ) -> dict[str, Any]:
    """Time the project's compiled MLX training step (see the module docstring)."""
    train_cfg = TrainConfig(batch_size=case.batch, precision=case.precision, steps=100_000)
    mx.random.seed(train_cfg.seed)
    model = StoryModel(cfg)
    model.compute_dtype = mx.bfloat16 if case.precision == "bfloat16" else mx.float32
    optimizer = make_optimizer(train_cfg)
    optimizer.init(model.trainable_parameters())
    mx.eval(model.parameters(), optimizer.state)
    model.train()
    step_fn, state = build_train_step(model, optimizer, train_cfg.grad_clip)
    resident = [mx.array(batches.get(i)) for i in range(8)] if case.variant == "device" else []
    mx.eval(resident)
    loop_batches = batches.uploaded if case.variant == "host batches" else batches.training
    window = {"loss": mx.array(0.0), "n": 0}

    def run_step(step: int) -> None:
        mx.random.seed(train_cfg.seed * 1_000_003 + step)
        batch = resident[step % len(resident)] if resident else loop_batches(step)
        loss, norm = step_fn(batch)
        if case.variant == "sync":
            mx.eval(state, loss, norm)
        else:
            mx.async_eval(state, loss, norm)
        window["loss"] = window["loss"] + loss
        window["n"] += 1
        if window["n"] == LOG_EVERY:
            if not math.isfinite(window["loss"].item()):
                raise RuntimeError("the loss is not finite")
            window["loss"], window["n"] = mx.array(0.0), 0

    result = timed_run(run_step, lambda: mx.eval(state), warmup, seconds)
    result["params"] = count_parameters(model)
    result["batches"] = ("resident" if resident else
                         "gathered on the device" if loop_batches.on_device else "host")
    return result


class TorchBench:
    """The PyTorch side: one model per shape, compiled once per precision and reused across
    batch sizes (the batch dimension is marked dynamic, so a new batch size does not
    recompile)."""

    def __init__(self, torch: Any, compile_model: bool) -> None:
        self.torch, self.compile_model = torch, compile_model
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._models: dict[str, Any] = {}
        self._losses: dict[tuple[str, str, bool], Callable[[Any], Any]] = {}

    def _model(self, name: str, cfg: ModelConfig) -> Any:
        from benchmarks.torch_reference import TorchStoryModel

        if name not in self._models:
            self.torch.manual_seed(0)
            self._models[name] = TorchStoryModel(cfg).to(self.device).train()
        return self._models[name]

    def _loss(self, name: str, cfg: ModelConfig, precision: str, compiled: bool
              ) -> Callable[[Any], Any]:
        import torch.nn.functional as F

        torch, device, model = self.torch, self.device, self._model(name, cfg)
        if (name, precision, compiled) not in self._losses:
            autocast = precision == "bfloat16"

            def forward_loss(batch: Any) -> Any:
                inputs, targets = batch[:, :-1], batch[:, 1:]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model(inputs)
                return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

            self._losses[name, precision, compiled] = (torch.compile(forward_loss) if compiled
                                                       else forward_loss)
        return self._losses[name, precision, compiled]

    def measure(self, case: Case, cfg: ModelConfig, batches: Batches, warmup: int,
                seconds: float) -> dict[str, Any]:
        """Time compiled forward + loss, backward, clipping and an AdamW step.

        If ``torch.compile`` fails here, the error is recorded and the case is timed eagerly
        (``torch_compile`` is False in the result).
        """
        if not self.compile_model:
            return {**self._timed(case, cfg, batches, warmup, seconds, False),
                    "torch_compile": False}
        try:
            return {**self._timed(case, cfg, batches, warmup, seconds, True),
                    "torch_compile": True}
        except Exception as exc:  # a missing compiler or an unsupported op on this machine
            error = f"{type(exc).__name__}: {exc}"[:300]
            log(f"     torch.compile failed ({error}); timing eagerly")
            result = self._timed(case, cfg, batches, warmup, seconds, False)
            return {**result, "torch_compile": False, "compile_error": error}

    def _timed(self, case: Case, cfg: ModelConfig, batches: Batches, warmup: int,
               seconds: float, compiled: bool) -> dict[str, Any]:
        from benchmarks.torch_reference import make_optimizer as torch_optimizer

        torch, device = self.torch, self.device
        train_cfg = TrainConfig(batch_size=case.batch)
        model = self._model(case.config, cfg)
        loss_fn = self._loss(case.config, cfg, case.precision, compiled)
        optimizer = torch_optimizer(model, train_cfg.lr, (train_cfg.beta1, train_cfg.beta2),
                                    train_cfg.weight_decay, fused=device.type == "cuda")
        window = {"loss": torch.zeros((), device=device), "n": 0}
        # maybe_mark_dynamic (PyTorch >= 2.3) falls back to a recompile instead of failing
        mark_dynamic = getattr(torch._dynamo, "maybe_mark_dynamic", torch._dynamo.mark_dynamic)

        def run_step(step: int) -> None:
            batch = torch.from_numpy(batches.get(step)).to(device, non_blocking=True).long()
            if compiled:
                mark_dynamic(batch, 0)
            loss = loss_fn(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip,
                                           foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window["loss"] = window["loss"] + loss.detach()
            window["n"] += 1
            if window["n"] == LOG_EVERY:
                if not math.isfinite(window["loss"].item()):
                    raise RuntimeError("the loss is not finite")
                window["loss"], window["n"] = torch.zeros((), device=device), 0

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        result = timed_run(run_step, sync, warmup, seconds)
        result["params"] = sum(p.numel() for p in model.parameters())
        return result


def release_memory(torch: Any) -> None:
    """Give the finished measurement's buffers back before the next one."""
    gc.collect()
    mx.clear_cache()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def matmul_peak(dtype: mx.Dtype, size: int, seconds: float) -> float:
    """Measured FLOP/s of large square MLX matrix products in ``dtype``."""
    a = mx.random.normal((size, size)).astype(dtype)
    b = mx.random.normal((size, size)).astype(dtype)
    mx.eval(a, b)
    mx.eval(a @ b)
    count, start = 0, time.perf_counter()
    while True:
        outs = [a @ b for _ in range(4)]
        mx.eval(outs)
        count += 4
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * size**3 * count / elapsed


def datasheet_peak(gpu_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a known NVIDIA GPU, from its datasheet."""
    for key, flops in DATASHEET_BF16:
        if key.lower() in gpu_name.lower():
            return flops
    return None


def import_torch(enabled: bool) -> tuple[Any, str | None]:
    """The torch module, or None and the reason it is left out."""
    if not enabled:
        return None, "PyTorch column skipped (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed here: the PyTorch column is skipped"
    return torch, None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; a profile's defaults fill in what is not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--configs", help="comma-separated presets, e.g. seed,4x")
    parser.add_argument("--batch-sizes", help="comma-separated, e.g. 32,128,256")
    parser.add_argument("--mlx-precisions", help="float32,bfloat16 (for every shape)")
    parser.add_argument("--torch-precisions", help="float32,bfloat16 (bfloat16 = autocast)")
    parser.add_argument("--seq-len", type=int, help="tokens per row (default: the context)")
    parser.add_argument("--seconds", type=float, help="timed seconds per measurement")
    parser.add_argument("--max-seconds", type=float, help="stop starting measurements after")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--no-torch-compile", action="store_true",
                        help="run PyTorch eagerly (the smoke test does: compiling is slow)")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the extra MLX runs")
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else args.device]
    args.mlx_precisions_other_configs = (args.mlx_precisions.split(",") if args.mlx_precisions
                                         else profile["mlx_precisions_other_configs"])
    for key in ("configs", "batch_sizes", "mlx_precisions", "torch_precisions"):
        value = getattr(args, key)
        items = value.split(",") if value else profile[key]
        setattr(args, key, [int(v) for v in items] if key == "batch_sizes" else list(items))
    for key in ("seq_len", "seconds", "max_seconds"):
        if getattr(args, key) is None:
            setattr(args, key, profile[key])
    args.warmup = profile["warmup"]
    args.diagnose = (None if args.no_diagnose or profile["diagnose_batch"] is None
                     else (profile["diagnose_batch"], profile["diagnose_precision"]))
    if args.smoke:
        args.no_torch_compile = True
    return args


def plan(args: argparse.Namespace, with_torch: bool) -> list[Case]:
    """Measurements in priority order: seed shape first, each batch size MLX then PyTorch."""
    cases = []
    for config in args.configs:
        precisions = (args.mlx_precisions if config == args.configs[0]
                      else args.mlx_precisions_other_configs)
        for batch in args.batch_sizes:
            cases += [Case("mlx", config, batch, p) for p in precisions]
            if with_torch:
                cases += [Case("torch", config, batch, p) for p in args.torch_precisions]
        if args.diagnose and config == args.configs[0]:
            batch, precision = args.diagnose
            cases += [Case("mlx", config, batch, precision, v)
                      for v in ("device", "host batches", "sync")]
    return cases


def compare_with_torch(rows: list[dict[str, Any]]) -> None:
    """Set ``vs_torch`` on MLX rows: their tokens/s over the fastest PyTorch row alike."""
    for row in rows:
        if row["framework"] != "mlx" or "tokens_per_sec" not in row:
            continue
        torch_rows = [r for r in rows if r["framework"] == "torch" and "tokens_per_sec" in r
                      and (r["config"], r["batch"]) == (row["config"], row["batch"])]
        if torch_rows:
            best = max(torch_rows, key=lambda r: r["tokens_per_sec"])
            row["vs_torch"] = row["tokens_per_sec"] / best["tokens_per_sec"]
            row["vs_torch_precision"] = best["precision"]


def main(argv: list[str] | None = None) -> int:
    """Run the planned measurements, print the table and write the JSON.

    The JSON is rewritten after every measurement, so a crash or a time-out keeps the rows
    measured so far.
    """
    args = parse_args(argv)
    if args.device == "gpu" and mx.default_device().type != mx.DeviceType.gpu:
        print("--device gpu, but MLX has no GPU here (is the CUDA build on PYTHONPATH?)",
              file=sys.stderr)
        return 2
    mx.set_default_device(mx.gpu if args.device == "gpu" else mx.cpu)
    torch, torch_note = import_torch(not args.no_torch)
    if torch is not None and args.device == "gpu" and not torch.cuda.is_available():
        torch, torch_note = None, "PyTorch has no CUDA device here: its column is skipped"
    machine = machine_info(torch)
    deadline = time.monotonic() + args.max_seconds

    peak_seconds = 0.5 if args.smoke else 2.0
    peaks: dict[str, Any] = {}
    if args.device == "gpu":
        peaks["measured_mlx_bf16_matmul"] = matmul_peak(mx.bfloat16, 8192, peak_seconds)
        name = str(machine.get("torch_cuda_device") or
                   (machine.get("gpu") or {}).get("device_name", ""))
        peaks["datasheet_bf16"] = datasheet_peak(name)
    else:
        peaks["measured_mlx_fp32_matmul"] = matmul_peak(mx.float32, 256 if args.smoke else 1024,
                                                        peak_seconds)
    mfu_peak_key = "datasheet_bf16" if peaks.get("datasheet_bf16") else next(iter(peaks))
    log(f"matmul peaks: {peaks}")

    settings = {"device": args.device, "smoke": args.smoke, "configs": args.configs,
                "batch_sizes": args.batch_sizes, "mlx_precisions": args.mlx_precisions,
                "mlx_precisions_other_configs": args.mlx_precisions_other_configs,
                "torch_precisions": args.torch_precisions if torch else [],
                "torch_compile": bool(torch) and not args.no_torch_compile,
                "seq_len": args.seq_len, "timed_seconds": args.seconds, "warmup": args.warmup,
                "max_seconds": args.max_seconds, "log_every": LOG_EVERY}
    notes = [torch_note] if torch_note else []
    notes += [
        "MLX rows run saga_model.train.build_train_step + make_optimizer like run_training: "
        "batches from saga_model.train_batches.TrainingBatches (on a CUDA GPU: tokens "
        "resident on the device, each step's window starts uploaded and the windows gathered "
        "there; elsewhere sample_batch on the host and an mx.array upload), mx.async_eval "
        f"each step, .item() every {LOG_EVERY} steps. Variant 'device': the same 8 batches "
        "already on the device (the reference); 'host batches': sample_batch on the host and "
        "an upload every step (the trainer before TrainingBatches; still so on CPUs and "
        "Metal); 'sync': mx.eval every step. An MLX row's 'batches' says which it got "
        "('gathered on the device', 'host' or 'resident').",
        "PyTorch rows: torch_reference.TorchStoryModel (same parameter count), forward+loss "
        "under torch.compile (unless settings.torch_compile is false; batch dimension marked "
        "dynamic, one compile per shape and precision), bf16 autocast for "
        "precision bfloat16, clip_grad_norm_, AdamW (fused on CUDA) at a constant learning "
        "rate; same host batches uploaded every step.",
        f"MFU = model FLOP/s / {mfu_peak_key} peak; FLOPs: {FLOPS_FORMULA}.",
        "vs_torch = MLX tokens/s / the fastest PyTorch row of the same shape and batch.",
        "tokens_per_sec: from the median timed window (robust to bursts of other work on a "
        "shared machine); tokens_per_sec_mean: over all timed windows; tokens_per_sec_range: "
        "slowest and fastest window.",
    ]
    out = args.out or RESULTS / f"train_throughput_{args.device}.json"
    rows: list[dict[str, Any]] = []

    def save() -> None:
        compare_with_torch(rows)
        write_result(out, "train_throughput", settings, rows, machine, notes,
                     flops_formula=FLOPS_FORMULA, peak_flops=peaks, mfu_peak=mfu_peak_key)

    torch_bench = TorchBench(torch, not args.no_torch_compile) if torch is not None else None
    batch_cache: dict[tuple[str, int], Batches] = {}
    for case in plan(args, torch is not None):
        cfg = PRESETS[case.config]
        seq = args.seq_len or cfg.context_length
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "context_length": seq})
        row: dict[str, Any] = {"config": case.config, "batch": case.batch, "seq_len": seq,
                               "framework": case.framework, "precision": case.precision,
                               "variant": case.variant}
        rows.append(row)
        if time.monotonic() > deadline:
            row["skipped"] = f"time box of {args.max_seconds:.0f} s reached"
            log(f"skip {case}")
            continue
        key = (case.config, case.batch)
        if key not in batch_cache:
            batch_cache[key] = Batches(cfg.vocab_size, seq, case.batch)
        batches = batch_cache[key]
        log(f"run  {case} ...")
        try:
            if case.framework == "mlx":
                result = measure_mlx(case, cfg, batches, args.warmup, args.seconds)
            else:
                assert torch_bench is not None
                result = torch_bench.measure(case, cfg, batches, args.warmup, args.seconds)
        except Exception as exc:  # an out-of-memory or backend error ends only this row
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            log(f"     error: {row['error']}")
            continue
        finally:
            release_memory(torch)
        row.update(result)
        row["tokens_per_sec"] = case.batch * seq / result["median_step_seconds"]
        row["tokens_per_sec_mean"] = case.batch * seq / result["mean_step_seconds"]
        row["tokens_per_sec_range"] = [case.batch * seq / result["max_step_seconds"],
                                       case.batch * seq / result["min_step_seconds"]]
        row["host_batch_ms"] = batches.host_ms()
        row["model_tflops"] = row["tokens_per_sec"] * flops_per_token(cfg, result["params"],
                                                                      seq) / 1e12
        row["mfu"] = row["model_tflops"] * 1e12 / peaks[mfu_peak_key]
        log(f"     {row['tokens_per_sec']:,.0f} tokens/s, "
            f"first step {result['first_step_seconds']:.2f} s")
        save()

    save()
    columns = [("config", "config"), ("batch", "batch"), ("framework", "framework"),
               ("precision", "precision"), ("variant", "variant"),
               ("tokens_per_sec", "tokens/s"), ("mfu", "MFU"), ("vs_torch", "vs torch"),
               ("first_step_seconds", "1st step s"), ("host_batch_ms", "batch ms"),
               ("skipped", "skipped"), ("error", "error")]
    print(format_table(rows, columns))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
