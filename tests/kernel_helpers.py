"""What the tests of the CUDA kernel modules share."""

from __future__ import annotations

import mlx.core as mx


def relative_error(got: mx.array, want: mx.array) -> float:
    """The largest difference between ``got`` and ``want`` over the largest entry of ``want``,
    in float32."""
    got, want = got.astype(mx.float32), want.astype(mx.float32)
    return (mx.abs(got - want).max() / mx.abs(want).max()).item()
