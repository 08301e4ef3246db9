"""Run the project's CUDA kernels on the CPU, to test them before any device time is spent.

A stand-in for ``mx.fast.cuda_kernel`` writes each kernel as C++ around ``shim.h`` (one host
thread per CUDA thread; warp instructions by their fragment layouts), compiles it with g++
(C++20, with CUDA's ``cuda_bf16.h`` for the bfloat16 type), runs the whole grid on the
inputs and hands back the outputs; the kernel modules are told the kernels run here. Slow
(seconds per kernel), exact in what it checks: indexing, fragment layouts, masking and
bounds. It cannot check timing, memory ordering or anything the shim stands in for.

    python tools/cuda_emulator/emulate.py tests/test_attention.py [pytest options]

runs pytest with the kernels emulated (the tests marked "needs a CUDA GPU" included; those
that ask MLX whether a CUDA GPU is there fail, and float32 results differ from the GPU's in
the last bits: the head loss's float32 contract test misses its 1e-5 by a little). All the
other GPU tests of the six kernel modules pass here, the whole training step's among them
(six minutes on two cores).
``CUDA_EMULATOR_OFFSET=1`` starts every input and output one element past a 64-byte
boundary, to take the kernels' unaligned paths. Needs g++ and the CUDA headers
(``CUDA_HOME``, default /usr/local/cuda).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = Path(os.environ.get("CUDA_EMULATOR_BUILD", "/tmp/cuda_emulator"))
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
OFFSET = int(os.environ.get("CUDA_EMULATOR_OFFSET", "0"))

#: Device functions whose bodies are inline PTX: shim.h has host versions of each.
_STAND_INS = ("mma16816", "exp2_fast", "ldmatrix_x4", "ldmatrix_x4_trans")


def _host_header(header: str, shared_memory: int) -> str:
    """The kernel's header without the device functions shim.h stands in for, its dynamic
    shared memory (``extern __shared__``) a static array of ``shared_memory`` bytes."""
    for name in _STAND_INS:
        header = re.sub(r"(template <[^>]*>\n)?__device__ inline [\w ]+ " + name
                        + r"\(.*?\n}\n", "", header, flags=re.S)
    header = re.sub(r"extern __shared__ (__align__\(\d+\) )?(\w+) (\w+)\[\];",
                    lambda m: f"static {m[1] or ''}{m[2]} {m[3]}"
                              f"[{shared_memory} / sizeof({m[2]}) + 1];", header)
    return header.replace("typedef __nv_bfloat16 bf16;", "")


def _program(mx: Any, name: str, inputs: list[Any], outputs: list[tuple[str, Any, int]],
             source: str, header: str, shared_memory: int, template: list[tuple[str, Any]],
             init_value: float | None) -> str:
    """The C++ program that reads the inputs, runs the grid and writes the outputs."""
    ctype = {mx.bfloat16: "bf16", mx.float32: "float", mx.int32: "int32_t"}
    parameters = []
    for input_name, array in inputs:
        parameters += [f"const {ctype[array.dtype]}* {input_name}",
                       f"const int* {input_name}_shape"]
    parameters += [f"{ctype[dtype]}* {output_name}" for output_name, dtype, _ in outputs]
    constants = "".join(
        f"  constexpr int {key} = {value};\n" if isinstance(value, int)
        else f"  using {key} = {ctype[value]};\n" for key, value in template)
    lines = ['#include "shim.h"', _host_header(header, shared_memory),
             f"void kernel_{name}({', '.join(parameters)}) {{", constants + source, "}",
             "int main(int argc, char** argv) {",
             "  const std::string dir = argv[1];",
             "  const Index3 grid = {unsigned(atoi(argv[2])), unsigned(atoi(argv[3])), "
             "unsigned(atoi(argv[4]))};"]
    arguments = []
    for index, (_, array) in enumerate(inputs):
        shape = ", ".join(str(size) for size in array.shape) or "0"
        lines += [f"  auto* in{index} = static_cast<const {ctype[array.dtype]}*>(read_file("
                  f'dir + "/in{index}", {OFFSET} * sizeof({ctype[array.dtype]})));',
                  f"  const int shape{index}[] = {{{shape}}};"]
        arguments += [f"in{index}", f"shape{index}"]
    fill = 0 if init_value == 0 else 0x7F  # 0x7f7f...: garbage that shows as huge numbers
    for index, (_, dtype, size) in enumerate(outputs):
        item = f"sizeof({ctype[dtype]})"
        lines += [f"  char* raw{index} = static_cast<char*>(aligned_alloc(64, "
                  f"({size} * {item} + {OFFSET} * {item} + 127) / 64 * 64));",
                  f"  auto* out{index} = reinterpret_cast<{ctype[dtype]}*>(raw{index} + "
                  f"{OFFSET} * {item});",
                  f"  memset(out{index}, {fill}, {size} * {item});"]
        arguments.append(f"out{index}")
    call = f"kernel_{name}({', '.join(arguments)});"
    lines.append(f"  run_grid(grid, atoi(argv[5]), [=] {{ {call} }});")
    for index, (_, dtype, size) in enumerate(outputs):
        lines.append(f'  std::ofstream(dir + "/out{index}", std::ios::binary).write('
                     f"reinterpret_cast<char*>(out{index}), {size} * sizeof({ctype[dtype]}));")
    return "\n".join([*lines, "}", ""])


def _to_numpy(mx: Any, array: Any) -> np.ndarray:
    """An array's elements in row order (bfloat16 as its 16 bits)."""
    array = mx.contiguous(array)
    return np.array(array.view(mx.uint16) if array.dtype == mx.bfloat16 else array)


def emulated_cuda_kernel(mx: Any) -> Callable[..., Callable[..., list[Any]]]:
    """The stand-in for ``mx.fast.cuda_kernel``."""
    numpy_type = {mx.bfloat16: np.uint16, mx.float32: np.float32, mx.int32: np.int32}

    def cuda_kernel(name: str, input_names: list[str], output_names: list[str], source: str,
                    header: str = "", shared_memory: int = 0, **_: Any
                    ) -> Callable[..., list[Any]]:
        def run(inputs: list[Any], output_shapes: list[tuple[int, ...]],
                output_dtypes: list[Any], grid: tuple[int, int, int],
                threadgroup: tuple[int, int, int], template: list[tuple[str, Any]] = (),
                init_value: float | None = None, **__: Any) -> list[Any]:
            sizes = [int(np.prod(shape)) for shape in output_shapes]
            program = _program(mx, name, list(zip(input_names, inputs, strict=True)),
                               list(zip(output_names, output_dtypes, sizes, strict=True)),
                               source, header, shared_memory, list(template), init_value)
            work = BUILD / hashlib.sha256(program.encode()).hexdigest()[:16]
            work.mkdir(parents=True, exist_ok=True)
            binary = work / "kernel"
            if not binary.exists():
                (work / "kernel.cpp").write_text(program)
                built = subprocess.run(["g++", "-O1", "-std=c++20", "-pthread", "-w",
                                        f"-I{HERE}", f"-I{CUDA_INCLUDE}",
                                        str(work / "kernel.cpp"), "-o", str(binary)],
                                       capture_output=True, text=True)
                if built.returncode:
                    raise RuntimeError(f"{name} does not build on the host:\n"
                                       + built.stderr[-3000:])
            for index, array in enumerate(inputs):
                _to_numpy(mx, array).tofile(work / f"in{index}")
            blocks = [-(-total // size) for total, size in zip(grid, threadgroup, strict=True)]
            subprocess.run([str(binary), str(work), *map(str, blocks), str(threadgroup[0])],
                           check=True)
            results = []
            for index, (shape, dtype) in enumerate(zip(output_shapes, output_dtypes,
                                                      strict=True)):
                data = np.fromfile(work / f"out{index}", dtype=numpy_type[dtype])
                array = mx.array(data.reshape(shape))
                results.append(array.view(mx.bfloat16) if dtype == mx.bfloat16 else array)
            return results

        return run

    return cuda_kernel


def install() -> None:
    """Replace ``mx.fast.cuda_kernel`` and tell every kernel module its kernels run here."""
    import mlx.core as mx

    sys.path.insert(0, str(ROOT))
    from saga_model import (
        attention,
        cuda,
        embedding,
        fused_optimizer,
        gelu,
        head_loss,
        rms_norm,
        rotary,
    )

    def kernels_run_here(dtype: mx.Dtype) -> bool:
        return cuda.kernels_enabled and dtype in (mx.bfloat16, mx.float32)

    def tensor_cores_run_here(dtype: mx.Dtype) -> bool:
        return cuda.kernels_enabled and dtype == mx.bfloat16

    mx.fast.cuda_kernel = emulated_cuda_kernel(mx)
    for module in (cuda, attention, embedding, fused_optimizer, gelu, head_loss, rms_norm,
                   rotary):
        if hasattr(module, "kernels_run_here"):
            module.kernels_run_here = kernels_run_here
        if hasattr(module, "tensor_cores_run_here"):
            module.tensor_cores_run_here = tensor_cores_run_here


def main(argv: list[str]) -> int:
    """pytest with the kernels emulated."""
    import pytest

    install()
    return pytest.main(["-p", "no:cacheprovider", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
