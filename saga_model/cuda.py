"""Where the project's CUDA kernels (``mx.fast.cuda_kernel``) run: a CUDA GPU in use.

The kernels of :mod:`saga_model.head_loss`, :mod:`saga_model.rms_norm` and
:mod:`saga_model.gelu` are written for bfloat16 and float32; elsewhere (CPUs, Metal) each
module's portable MLX path runs instead.
"""

from __future__ import annotations

import mlx.core as mx

#: The dtypes the kernels are written for.
_KERNEL_DTYPES = (mx.bfloat16, mx.float32)


def kernels_run_here(dtype: mx.Dtype) -> bool:
    """Whether MLX computes on a CUDA GPU now, in a dtype the kernels take."""
    return (mx.cuda.is_available() and mx.default_device().type == mx.DeviceType.gpu
            and dtype in _KERNEL_DTYPES)
