"""What the tests of the CUDA kernel modules share."""

from __future__ import annotations

import mlx.core as mx

from saga_model.cuda import on_cuda_gpu

#: Whether these tests run on a CUDA GPU (the device machine), where the kernels should run.
ON_A_CUDA_GPU = on_cuda_gpu()


def relative_error(got: mx.array, want: mx.array) -> float:
    """The largest difference between ``got`` and ``want`` over the largest entry of ``want``,
    in float32."""
    got, want = got.astype(mx.float32), want.astype(mx.float32)
    return (mx.abs(got - want).max() / mx.abs(want).max()).item()
