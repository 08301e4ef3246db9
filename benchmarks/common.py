"""What every benchmark shares: machine information, tables, timing helpers and JSON output.

Imported by the scripts in this folder, which run from the project root (the editable install
or ``PYTHONPATH=.`` puts it on the path). Nothing here imports ``tui`` or ``platformdirs``, so
the training benchmark also runs on machines that only have MLX, NumPy and tokenizers.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None (without importing it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The processor's marketing name as the OS reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # the layout of show_config's dict is not a stable API
        return "unknown"


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the project, or None without git."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _load_average() -> float | None:
    """The 1-minute load average: other work on a shared machine skews CPU timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(torch_module: Any = None) -> dict[str, Any]:
    """Platform, CPU, accelerator, library versions and BLAS of this process.

    Pass the imported ``torch`` module to also record its version and CUDA device.
    """
    from saga_model import blas_in_use  # first: it must load OpenBLAS before mlx

    import mlx.core as mx  # isort: skip
    import numpy as np

    device = mx.default_device()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "mlx": package_version("mlx") or getattr(mx, "__version__", None),
        "mlx_device": str(device),
        "mlx_blas": blas_in_use(),
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_changes": bool(_git("status", "--porcelain")),
        "load_average_1m": _load_average(),
    }
    if device.type == mx.DeviceType.gpu:
        try:
            info["gpu"] = {k: v for k, v in mx.device_info().items()
                           if isinstance(v, str | int | float)}
        except Exception as exc:  # older MLX builds lack device_info on some backends
            info["gpu"] = f"unknown ({exc})"
    if torch_module is not None:
        info["torch"] = torch_module.__version__
        info["torch_threads"] = torch_module.get_num_threads()
        if torch_module.cuda.is_available():
            info["torch_cuda_device"] = torch_module.cuda.get_device_name(0)
    else:
        info["torch"] = package_version("torch")
    return info


def now_utc() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def write_result(path: str | Path, benchmark: str, settings: dict[str, Any],
                 results: list[dict[str, Any]], machine: dict[str, Any],
                 notes: Sequence[str] = (), **extra: Any) -> Path:
    """Write one benchmark's JSON (machine, date, settings, rows, notes) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": benchmark, "date": now_utc(), "machine": machine,
               "load_average_1m_at_end": _load_average(), "settings": settings, **extra,
               "results": results, "notes": list(notes)}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table of ``rows`` with ``columns`` given as (key, heading) pairs."""
    cells = [[heading for _, heading in columns]]
    cells += [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def log(message: str) -> None:
    """Progress on stderr, flushed at once (the device machine's logs are read live)."""
    print(message, file=sys.stderr, flush=True)
