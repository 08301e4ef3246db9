"""Which BLAS MLX gets on Linux: the loader's order, its fallbacks and what it reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli

from saga_model import _blas, blas_in_use

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the preload is Linux-only")


def _report(env: dict[str, str]) -> str:
    result = run_cli("-c", "import saga_model; print(saga_model.blas_in_use())", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_first_library_that_loads_is_used_in_order() -> None:
    loaded: list[str] = []

    def load(path: str) -> None:
        if "missing" in path:
            raise OSError(f"{path}: cannot open shared object file")
        loaded.append(path)

    choices = [("OpenBLAS", ["/missing/libopenblas.so.0"]), ("MKL", ["/fake/libmkl_rt.so.3"])]
    assert _blas.load_first(choices, load) == "MKL (/fake/libmkl_rt.so.3)"
    assert loaded == ["/fake/libmkl_rt.so.3"]
    loaded.clear()
    both = [("OpenBLAS", ["/fake/libopenblas.so.0"]), ("MKL", ["/fake/libmkl_rt.so.3"])]
    assert _blas.load_first(both, load) == "OpenBLAS (/fake/libopenblas.so.0)"


def test_nothing_loadable_falls_back_to_the_bundled_blas(tmp_path: Path) -> None:
    not_a_library = tmp_path / "libopenblas.so.0"
    not_a_library.write_text("not an ELF file")
    described = _blas.load_first([("OpenBLAS", [str(not_a_library)])])
    assert described.startswith(_blas.BUNDLED) and f"could not load {not_a_library}" in described
    assert "pip install mkl" in _blas.load_first([("OpenBLAS", []), ("MKL", [])])


@linux_only
def test_grain_blas_picks_or_refuses_a_library(tmp_path: Path) -> None:
    assert _report({"GRAIN_BLAS": "bundled"}) == f"{_blas.BUNDLED} (GRAIN_BLAS=bundled)"
    missing = tmp_path / "libnothing.so"
    fallback = _report({"GRAIN_BLAS": str(missing)})
    assert fallback.startswith(_blas.BUNDLED) and f"could not load {missing}" in fallback


@linux_only
@pytest.mark.skipif(not _blas.mkl_paths(), reason="the mkl wheel is not installed")
def test_mkl_from_pip_is_found_and_reported_by_version() -> None:
    assert _report({"GRAIN_BLAS": "mkl"}).startswith("MKL (")
    only_pip = {"GRAIN_BLAS": "mkl", "GRAIN_NO_OPENBLAS": ""}
    version = run_cli("-m", "saga_model.cli.train", "--version", env=only_pip)
    assert version.returncode == 0 and "BLAS: MKL (" in version.stdout


def test_this_process_reports_what_it_loaded() -> None:
    assert blas_in_use() == _blas._in_use and blas_in_use()


def test_mkl_is_tried_before_a_system_openblas() -> None:
    assert [kind for kind, _ in _blas._preferences("auto")] == ["MKL", "OpenBLAS"]
    assert [kind for kind, _ in _blas._preferences("openblas")] == ["OpenBLAS"]
