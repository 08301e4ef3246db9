"""Use the system OpenBLAS for MLX matrix products on Linux.

The Linux ``mlx[cpu]`` wheel ships the reference (netlib) BLAS, which multiplies
matrices at a few GFLOP/s. Loading an optimised OpenBLAS into the global symbol
namespace *before* MLX is first imported makes MLX resolve ``cblas_sgemm`` to it:
about 20x faster matrix products and about 6x faster training on CPU.

This module must be imported before ``mlx``; ``saga_model/__init__.py`` does that.
It does nothing on macOS (MLX uses Accelerate and Metal there), when MLX was
already imported, or when ``GRAIN_NO_OPENBLAS=1`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

# Where Debian/Ubuntu (libopenblas0-pthread), Fedora and conda put the library.
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

#: Human-readable description of the BLAS that MLX uses in this process.
blas_in_use: str = "platform default"


def _find_openblas() -> str | None:
    """Return the path of a system OpenBLAS, or None when none is installed."""
    prefix = os.environ.get("CONDA_PREFIX")
    candidates = [f"{prefix}/lib/libopenblas.so.0"] if prefix else []
    candidates += list(_CANDIDATES)
    for path in candidates:
        if Path(path).exists():
            return path
    return ctypes.util.find_library("openblas")


def _preload() -> None:
    global blas_in_use
    if sys.platform != "linux":
        blas_in_use = "Accelerate (macOS)" if sys.platform == "darwin" else "platform default"
        return
    if os.environ.get("GRAIN_NO_OPENBLAS") == "1":
        blas_in_use = "bundled reference BLAS (GRAIN_NO_OPENBLAS=1)"
        return
    if "mlx.core" in sys.modules:
        blas_in_use = "bundled reference BLAS (mlx was imported before saga_model)"
        return
    path = _find_openblas()
    if path is None:
        blas_in_use = ("bundled reference BLAS (install libopenblas0-pthread for ~20x faster "
                       "CPU math)")
        return
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        blas_in_use = f"bundled reference BLAS (could not load {path}: {exc})"
        return
    blas_in_use = f"OpenBLAS ({path})"


_preload()
