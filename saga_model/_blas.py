"""Give MLX a fast BLAS on Linux: Intel MKL from its pip wheel, else a system OpenBLAS.

The Linux ``mlx[cpu]`` wheel ships the reference (netlib) BLAS, which multiplies matrices at a
few GFLOP/s. Loading an optimised library that exports the standard ``cblas_*`` names into the
global symbol namespace *before* MLX is first imported makes MLX resolve ``cblas_sgemm`` to it.
Two are looked for, in this order (``benchmarks/blas_choice.py`` measured MKL faster for
training than Debian's OpenBLAS on a busy 2-core Xeon; see docs/teach.md):

1. Intel MKL's ``libmkl_rt`` from the ``mkl`` wheel, which ``pip install`` brings on Linux
   x86-64 (``pyproject.toml``), so a plain pip install trains fast without root;
2. a system OpenBLAS (``apt-get install libopenblas0-pthread``, Fedora, conda), e.g. on ARM.

``GRAIN_BLAS`` overrides the choice: ``openblas``, ``mkl``, ``bundled`` (MLX's own) or the path
of a library; ``GRAIN_NO_OPENBLAS=1`` is the same as ``GRAIN_BLAS=bundled``.

This module must be imported before ``mlx``; ``saga_model/__init__.py`` does that. It does
nothing on macOS (MLX uses Accelerate and Metal there) or when MLX was already imported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

# Where Debian/Ubuntu (libopenblas0-pthread), Fedora and conda put the library.
_SYSTEM_OPENBLAS = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)
_MKL_NAMES = ("libmkl_rt.so.3", "libmkl_rt.so.2")
#: The reference BLAS of the mlx[cpu] wheel, used when nothing faster loads.
BUNDLED = "bundled reference BLAS"

_in_use = "platform default"


def blas_in_use() -> str:
    """Which BLAS MLX's CPU matrix products use in this process, in words."""
    return _in_use


def openblas_paths() -> list[str]:
    """Existing system OpenBLAS libraries (conda's first), most preferred first."""
    prefix = os.environ.get("CONDA_PREFIX")
    candidates = [f"{prefix}/lib/libopenblas.so.0"] if prefix else []
    candidates += list(_SYSTEM_OPENBLAS)
    found = [path for path in candidates if Path(path).exists()]
    if not found and (name := ctypes.util.find_library("openblas")):
        found.append(name)
    return found


def mkl_paths() -> list[str]:
    """``libmkl_rt`` of the ``mkl`` wheel (installed under the environment's ``lib/``)."""
    prefixes = dict.fromkeys((sys.prefix, sys.base_prefix))
    found = [Path(prefix, "lib", name) for prefix in prefixes for name in _MKL_NAMES]
    found = [path for path in found if path.is_file()]
    if not found:  # installed elsewhere (pip --target, --user): ask the package's file list
        import importlib.metadata

        try:
            files = importlib.metadata.distribution("mkl").files or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        found = [Path(str(f.locate())) for f in files if Path(str(f)).name in _MKL_NAMES]
        found = [path for path in found if path.is_file()]
    return list(dict.fromkeys(str(path.resolve()) for path in found))


def _preferences(request: str) -> Iterator[tuple[str, list[str]]]:
    """(kind, library paths) to try in order for a ``GRAIN_BLAS`` value; each list is only
    searched when the ones before it did not load (finding OpenBLAS may run ``ldconfig``)."""
    if request in ("", "auto", "mkl"):
        yield "MKL", mkl_paths()
    if request in ("", "auto", "openblas"):
        yield "OpenBLAS", openblas_paths()
    if request not in ("", "auto", "mkl", "openblas"):
        yield "BLAS", [request]


def load_first(choices: Iterable[tuple[str, Sequence[str]]],
               load: Callable[[str], object] | None = None) -> str:
    """Load the first library of ``choices`` that loads; describe what MLX will use.

    ``load`` opens a library into the global namespace (``ctypes.CDLL`` with RTLD_GLOBAL by
    default). Libraries that fail to load are named in the description of the fallback.
    """
    load = load or (lambda path: ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    failures = []
    for kind, paths in choices:
        for path in paths:
            try:
                load(path)
            except OSError as exc:
                failures.append(f"could not load {path}: {exc}")
                continue
            return f"{kind} ({path})"
    if failures:
        return f"{BUNDLED} ({'; '.join(failures)})"
    return f"{BUNDLED} (pip install mkl, or apt-get install libopenblas0-pthread, for ~20x " \
           "faster CPU math)"


def _choose() -> str:
    if sys.platform != "linux":
        return "Accelerate (macOS)" if sys.platform == "darwin" else "platform default"
    if os.environ.get("GRAIN_NO_OPENBLAS") == "1":
        return f"{BUNDLED} (GRAIN_NO_OPENBLAS=1)"
    request = os.environ.get("GRAIN_BLAS", "auto").strip()
    if request == "bundled":
        return f"{BUNDLED} (GRAIN_BLAS=bundled)"
    if "mlx.core" in sys.modules:
        return f"{BUNDLED} (mlx was imported before saga_model)"
    return load_first(_preferences(request))


_in_use = _choose()
