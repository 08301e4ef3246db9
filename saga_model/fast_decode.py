"""A lean NumPy decoder for CPUs: the same model and outputs as the MLX path, at lower overhead.

On a CPU, one decode step of the seed-sized model is a few dozen tiny operations, and MLX's
per-operation cost dominates it. The same computation written with NumPy on float32 copies of
the weights, BLAS-friendly layouts (pre-transposed, fused, contiguous), a preallocated KV cache
and scratch buffers reused for every token runs several times faster (measured in
``benchmarks/generate_speed.py``, summarised in ``docs/performance.md``).
:class:`NumpyDecoder` implements the :class:`~saga_model.generate.Decoder` protocol and
reproduces :class:`~saga_model.model.StoryModel` in float32 exactly up to rounding:

* RMSNorm as ``mx.fast.rms_norm``: ``x / sqrt(mean(x^2) + eps) * weight``;
* RoPE as ``mx.fast.rope(traditional=False)``: the two halves of each head are rotated by
  ``position * base ** (-i / (head_dim / 2))``;
* GELU as ``nn.gelu_approx``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``;
* causal softmax attention scaled by ``head_dim ** -0.5``.

``tests/test_fast_decode.py`` checks it against the MLX model logit for logit.

While it runs, the OpenBLAS that NumPy's Linux wheels bundle is held to one thread: every
product of a decode step is small, and handing them to a thread pool costs more than it saves,
on a busy machine far more (the benchmark's ``numpy-unpinned`` row). MLX's own BLAS is left
alone.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .errors import SagaError
from .model import StoryModel

_GELU_C = math.sqrt(2 / math.pi)


@cache
def _bundled_openblas() -> tuple[tuple[Callable[[], int], Callable[[int], None]], ...]:
    """Thread-count getters and setters of the OpenBLAS copies NumPy's wheels bring along.

    Only libraries installed inside ``site-packages`` (``numpy.libs``, ``scipy_openblas64``)
    count, so the system OpenBLAS that MLX uses on Linux is never touched. Empty elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return ()
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return ()
    site = Path(np.__file__).resolve().parent.parent
    paths = {fields[5] for line in maps.splitlines()
             if len(fields := line.split(maxsplit=5)) == 6 and "openblas" in Path(fields[5]).name}
    controls = []
    for path in sorted(paths):
        if not Path(path).resolve().is_relative_to(site):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "", "_64"):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    controls.append((get, set_))
                    break
            else:
                continue
            break
    return tuple(controls)


def _pin_blas_threads() -> list[int]:
    """Hold NumPy's bundled OpenBLAS to one thread; returns the counts to restore."""
    saved = []
    for get, set_ in _bundled_openblas():
        saved.append(get())
        set_(1)
    return saved


def _restore_blas_threads(saved: list[int]) -> None:
    """Undo :func:`_pin_blas_threads`."""
    for (_, set_), count in zip(_bundled_openblas(), saved, strict=True):
        set_(count)


class _Layer:
    """One transformer block's weights, transposed for ``activation @ weight``."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str) -> None:
        self.attn_norm = weights[f"{prefix}.attn_norm.weight"]
        self.qkv = np.ascontiguousarray(weights[f"{prefix}.attn.qkv.weight"].T)
        self.out = np.ascontiguousarray(weights[f"{prefix}.attn.out.weight"].T)
        self.mlp_norm = weights[f"{prefix}.mlp_norm.weight"]
        self.up = np.ascontiguousarray(weights[f"{prefix}.mlp.up.weight"].T)
        self.down = np.ascontiguousarray(weights[f"{prefix}.mlp.down.weight"].T)


class NumpyDecoder:
    """Runs a :class:`StoryModel`'s weights with NumPy, one token at a time, with a KV cache.

    The weights are copied (as float32) when the decoder is built; later changes to the model
    are not seen. The cache holds ``context_length`` positions, as the MLX model's RoPE and
    :func:`~saga_model.generate.generate_tokens` expect.
    """

    def __init__(self, model: StoryModel) -> None:
        cfg = model.config
        weights = {name: np.array(value.astype(mx.float32), dtype=np.float32)
                   for name, value in tree_flatten(model.parameters())}
        self.context_length = cfg.context_length
        self._n_heads, self._head_dim = cfg.n_heads, cfg.head_dim
        self._eps = np.float32(cfg.norm_eps)
        self._scale = np.float32(cfg.head_dim**-0.5)
        self._embed = np.ascontiguousarray(weights["embed.weight"])
        self._layers = [_Layer(weights, f"blocks.{i}") for i in range(cfg.n_layers)]
        self._norm = weights["norm.weight"]
        head = weights["embed.weight"] if cfg.tie_embeddings else weights["head.weight"]
        self._head = np.ascontiguousarray(head.T)

        half = cfg.head_dim // 2
        inv_freq = cfg.rope_theta ** (-np.arange(half, dtype=np.float64) / half)
        angles = np.arange(cfg.context_length, dtype=np.float64)[:, None] * inv_freq
        self._cos = np.cos(angles).astype(np.float32)  # (context, head_dim / 2)
        self._sin = np.sin(angles).astype(np.float32)

        shape = (cfg.n_layers, cfg.n_heads, cfg.context_length, cfg.head_dim)
        self._keys = np.zeros(shape, np.float32)
        self._values = np.zeros(shape, np.float32)
        self._length = 0
        # Scratch buffers of the single-token step, reused for every token.
        d = cfg.d_model
        self._x = np.zeros(d, np.float32)
        self._h = np.zeros(d, np.float32)
        self._qkv = np.zeros(3 * d, np.float32)
        self._rot = np.zeros((2 * cfg.n_heads, half), np.float32)
        self._tmp = np.zeros((2 * cfg.n_heads, half), np.float32)
        self._scores = np.zeros((cfg.n_heads, 1, cfg.context_length), np.float32)
        self._attn = np.zeros((cfg.n_heads, 1, cfg.head_dim), np.float32)
        self._proj = np.zeros(d, np.float32)
        self._ff = np.zeros(cfg.ffn_dim, np.float32)
        self._ff_tmp = np.zeros(cfg.ffn_dim, np.float32)

    def prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        """Reset the cache, run ``token_ids`` and return the next-token logits (vocab,)."""
        saved = _pin_blas_threads()
        try:
            return self._prefill(token_ids)
        finally:
            _restore_blas_threads(saved)

    def step(self, token_id: int) -> np.ndarray:
        """Append one token and return the next-token logits (vocab,)."""
        saved = _pin_blas_threads()
        try:
            return self._step(token_id)
        finally:
            _restore_blas_threads(saved)

    def _prefill(self, token_ids: Sequence[int]) -> np.ndarray:
        n = len(token_ids)
        if not 0 < n <= self.context_length:
            raise SagaError(f"prefill needs 1 to {self.context_length} tokens, got {n}")
        heads, hd = self._n_heads, self._head_dim
        d = heads * hd
        x = self._embed[np.asarray(token_ids, dtype=np.int64)]  # (n, d), a copy
        cos, sin = self._cos[:n], self._sin[:n]
        causal = np.triu(np.full((n, n), -np.inf, np.float32), 1)
        for i, layer in enumerate(self._layers):
            qkv = (_rms_norm(x, layer.attn_norm, self._eps) @ layer.qkv).reshape(n, 3, heads, hd)
            q = _rope(qkv[:, 0].transpose(1, 0, 2), cos, sin)  # (heads, n, hd)
            k = _rope(qkv[:, 1].transpose(1, 0, 2), cos, sin)
            self._keys[i, :, :n] = k
            self._values[i, :, :n] = qkv[:, 2].transpose(1, 0, 2)
            scores = (q * self._scale) @ k.transpose(0, 2, 1) + causal  # (heads, n, n)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            attn = (scores @ self._values[i, :, :n]).transpose(1, 0, 2).reshape(n, d)
            x += attn @ layer.out
            up = _rms_norm(x, layer.mlp_norm, self._eps) @ layer.up
            x += _gelu(up) @ layer.down
        self._length = n
        return _rms_norm(x[-1], self._norm, self._eps) @ self._head

    def _step(self, token_id: int) -> np.ndarray:
        pos = self._length
        if pos >= self.context_length:
            raise SagaError(f"the context of {self.context_length} tokens is full")
        heads, hd = self._n_heads, self._head_dim
        half, d, n = hd // 2, heads * hd, pos + 1
        x, h, qkv, rot, tmp = self._x, self._h, self._qkv, self._rot, self._tmp
        scores, attn, proj, ff, ff_tmp = (self._scores[:, :, :n], self._attn, self._proj,
                                          self._ff, self._ff_tmp)
        cos, sin = self._cos[pos], self._sin[pos]
        np.copyto(x, self._embed[token_id])
        # q and k of all heads as rows (2 * heads, head_dim): rotated in place, in one go.
        qk = qkv[: 2 * d].reshape(2 * heads, hd)
        first, second = qk[:, :half], qk[:, half:]
        for i, layer in enumerate(self._layers):
            _rms_norm_into(x, layer.attn_norm, self._eps, h)
            np.matmul(h, layer.qkv, out=qkv)
            # RoPE: (a, b) -> (a cos - b sin, a sin + b cos), both halves from the old values.
            np.multiply(first, sin, out=rot)
            np.multiply(second, sin, out=tmp)
            first *= cos
            first -= tmp
            second *= cos
            second += rot
            keys, values = self._keys[i], self._values[i]
            keys[:, pos] = qk[heads:]
            values[:, pos] = qkv[2 * d:].reshape(heads, hd)
            q = qk[:heads, None, :]  # (heads, 1, hd)
            np.matmul(q, keys[:, :n].transpose(0, 2, 1), out=scores)
            scores *= self._scale
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            np.matmul(scores, values[:, :n], out=attn)
            np.matmul(attn.reshape(d), layer.out, out=proj)
            x += proj
            _rms_norm_into(x, layer.mlp_norm, self._eps, h)
            np.matmul(h, layer.up, out=ff)
            _gelu_into(ff, ff_tmp)
            np.matmul(ff, layer.down, out=proj)
            x += proj
        self._length = n
        _rms_norm_into(x, self._norm, self._eps, h)
        return h @ self._head


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: np.float32) -> np.ndarray:
    """``mx.fast.rms_norm`` over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rms_norm_into(x: np.ndarray, weight: np.ndarray, eps: np.float32, out: np.ndarray) -> None:
    """``mx.fast.rms_norm`` of a vector, written into ``out``."""
    scale = np.float32(1.0) / np.sqrt(np.dot(x, x) / np.float32(x.size) + eps)
    np.multiply(x, weight, out=out)
    out *= scale


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Non-traditional RoPE of (heads, n, head_dim) with per-position tables (n, head_dim/2)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def _gelu(x: np.ndarray) -> np.ndarray:
    """``nn.gelu_approx`` (tanh approximation)."""
    return 0.5 * x * (1 + np.tanh(np.float32(_GELU_C) * (x + np.float32(0.044715) * (x * x * x))))


def _gelu_into(x: np.ndarray, tmp: np.ndarray) -> None:
    """``nn.gelu_approx`` of ``x`` in place, using ``tmp`` as scratch."""
    np.multiply(x, x, out=tmp)
    tmp *= np.float32(0.044715)
    tmp += np.float32(1.0)
    tmp *= x
    tmp *= np.float32(_GELU_C)
    np.tanh(tmp, out=tmp)
    tmp += np.float32(1.0)
    tmp *= np.float32(0.5)
    x *= tmp
