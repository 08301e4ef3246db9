"""The transformer: size, shapes, causal masking, KV cache and mixed precision."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from kernel_helpers import relative_error
from mlx.utils import tree_flatten

from saga_model import ModelConfig, StoryModel, count_parameters, cuda, rms_norm
from saga_model import model as model_module
from saga_model.config import PRESETS
from saga_model.cuda import kernels_run_here
from saga_model.embedding import embed_tokens
from saga_model.errors import SagaError
from saga_model.gelu import cuda_gelu, ops_gelu
from saga_model.model import Attention, gelu_approx
from saga_model.rms_norm import fused_residual_norms_available
from saga_model.train import training_loss


def small_config(**changes: object) -> ModelConfig:
    return ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "vocab_size": 300, **changes})


def test_seed_config_has_the_documented_shape_and_size() -> None:
    cfg = ModelConfig()
    assert (cfg.vocab_size, cfg.context_length, cfg.d_model, cfg.n_layers, cfg.n_heads,
            cfg.ffn_dim) == (8000, 512, 128, 3, 4, 384)
    assert count_parameters(StoryModel(cfg)) == 2_540_416


def test_logits_have_batch_length_vocab_shape() -> None:
    model = StoryModel(small_config())
    assert model(mx.zeros((3, 17), dtype=mx.int32)).shape == (3, 17, 300)


def test_future_tokens_do_not_change_past_logits() -> None:
    mx.random.seed(0)
    model = StoryModel(small_config(n_layers=2))
    a = mx.random.randint(0, 300, (1, 20))
    b = mx.concatenate([a[:, :10], mx.random.randint(0, 300, (1, 10))], axis=1)
    la, lb = model(a), model(b)
    assert mx.allclose(la[:, :10], lb[:, :10], atol=1e-5)
    assert not mx.allclose(la[:, 10:], lb[:, 10:], atol=1e-3)


def test_kv_cache_matches_full_recomputation() -> None:
    mx.random.seed(1)
    model = StoryModel(small_config(n_layers=2))
    tokens = mx.random.randint(0, 300, (1, 40))
    full = model(tokens)
    cache = model.make_cache()
    pieces = [model(tokens[:, :15], cache)]  # prefill a prompt, then one token at a time
    pieces += [model(tokens[:, i : i + 1], cache) for i in range(15, 40)]
    incremental = mx.concatenate(pieces, axis=1)
    # On a CUDA GPU float32 products round their inputs to TF32, differently for the
    # different shapes of the two paths.
    tolerance = 1e-3 if mx.default_device().type == mx.DeviceType.gpu else 1e-4
    assert np.abs(np.array(full - incremental)).max() < tolerance
    assert cache[0].offset == 40


def pre_norm_hidden_states(model: StoryModel, tokens: mx.array) -> mx.array:
    """The model's hidden states written out with MLX's residual additions (no dropout)."""
    x = embed_tokens(model.embed.weight, tokens, model.compute_dtype)
    for block in model.blocks:
        x = x + block.attn(block.attn_norm(x))
        x = x + block.mlp(block.mlp_norm(x))
    return model.norm(x)


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 1e-5), (mx.bfloat16, 2e-2)])
def test_the_blocks_leave_each_residual_addition_to_the_norm_after_it(
        dtype: mx.Dtype, tolerance: float) -> None:
    # Elsewhere the same operations as the pre-norm blocks written out, bit for bit; on a CUDA
    # GPU (each addition inside the norm's kernels there) the same hidden states, and the
    # gradients up to the one rounding of the stream's gradient sums instead of two.
    mx.random.seed(8)
    model = StoryModel(small_config(n_layers=2, d_model=64, n_heads=2))
    model.compute_dtype = dtype
    tokens = mx.random.randint(0, 300, (2, 11))
    weights = mx.random.normal((11, 300))

    def loss(hidden: Callable[[StoryModel, mx.array], mx.array]) -> tuple[mx.array, dict]:
        def scalar(model: StoryModel) -> mx.array:
            logits = hidden(model, tokens) @ model.head_weight.astype(dtype).T
            return (logits.astype(mx.float32) * weights).sum()

        value, grads = nn.value_and_grad(model, scalar)(model)
        return value, dict(tree_flatten(grads))

    hidden, want_hidden = model.hidden_states(tokens), pre_norm_hidden_states(model, tokens)
    assert mx.array_equal(hidden, want_hidden)
    (value, grads), (want_value, want_grads) = (loss(StoryModel.hidden_states),
                                                loss(pre_norm_hidden_states))
    assert value.item() == want_value.item() and grads.keys() == want_grads.keys()
    fused = fused_residual_norms_available(dtype, 64)
    for name, want in want_grads.items():
        assert (relative_error(grads[name], want) <= tolerance if fused
                else mx.array_equal(grads[name], want)), name


@pytest.fixture
def norm_kernels_as_graph_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The norms' kernels "run" here as stand-ins that read every input and add nothing, so
    that a gradient's graph shows which additions are left to MLX (nothing is evaluated)."""

    def stand_in(**_: object) -> Callable[..., list[mx.array]]:
        def run(*, inputs: list[mx.array], output_shapes: list[tuple[int, ...]],
                output_dtypes: list[mx.Dtype], **__: object) -> list[mx.array]:
            read = mx.stack([a.astype(mx.float32).sum() for a in inputs]).prod()
            return [mx.broadcast_to(read, shape).astype(dtype)
                    for shape, dtype in zip(output_shapes, output_dtypes, strict=True)]

        return run

    cuda.cuda_kernel.cache_clear()
    monkeypatch.setattr(mx.fast, "cuda_kernel", stand_in)
    monkeypatch.setattr(rms_norm, "kernels_run_here", lambda dtype: True)
    yield
    cuda.cuda_kernel.cache_clear()


@pytest.mark.usefixtures("norm_kernels_as_graph_nodes")
def test_the_norms_kernels_leave_no_residual_addition_to_mlx(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Per block two additions of the stream forward and two sums of its gradient backward
    # (the first norm's too: its stream passes through it).
    model = StoryModel(small_config(n_layers=3))
    tokens = mx.zeros((2, 5), dtype=mx.int32)

    def additions() -> int:
        _, grads = nn.value_and_grad(model, lambda model: model.hidden_states(tokens).sum())(model)
        graph = io.StringIO()
        mx.export_to_dot(graph, *(g for _, g in tree_flatten(grads)))
        return graph.getvalue().count('label ="Add"')

    fused = additions()
    monkeypatch.setattr(model_module, "fused_residual_norms_available", lambda *_: False)
    assert fused == additions() - 4 * 3


def test_bfloat16_compute_stays_close_to_float32() -> None:
    mx.random.seed(2)
    model = StoryModel(small_config())
    tokens = mx.random.randint(0, 300, (2, 16))
    reference = model(tokens)
    model.compute_dtype = mx.bfloat16
    mixed = model(tokens)
    assert mixed.dtype == mx.float32
    assert np.abs(np.array(reference - mixed)).max() < 0.05


@pytest.mark.parametrize("changes", [{"d_model": 30, "n_heads": 4}, {"n_layers": 0},
                                     {"dropout": 1.5}])
def test_invalid_shapes_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(SagaError):
        small_config(**changes)


def test_config_json_round_trip(tmp_path) -> None:
    cfg = small_config(dropout=0.1)
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg
    (tmp_path / "bad.json").write_text('{"d_model": 64, "colour": "blue"}')
    with pytest.raises(SagaError, match="unknown keys: colour"):
        ModelConfig.load(tmp_path / "bad.json")


def test_attention_split_has_the_gradient_of_per_slice_attention() -> None:
    # Attention splits q, k, v with one mx.split; the reference slices them one by one.
    mx.random.seed(4)
    cfg = small_config()
    attention = Attention(cfg)
    x = mx.random.normal((2, 9, cfg.d_model))

    def reference(x: mx.array) -> mx.array:
        batch, length, dims = x.shape
        qkv = attention.qkv(x).reshape(batch, length, 3, cfg.n_heads, cfg.head_dim)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        q, k = (mx.fast.rope(t, cfg.head_dim, traditional=False, base=cfg.rope_theta,
                             scale=1.0, offset=0) for t in (q, k))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=cfg.head_dim**-0.5,
                                                   mask="causal")
        return attention.out(out.transpose(0, 2, 1, 3).reshape(batch, length, dims))

    def loss(model: Attention, x: mx.array, fn: Callable[[mx.array], mx.array]) -> mx.array:
        return (fn(x) * mx.arange(cfg.d_model)).sum()

    got = nn.value_and_grad(attention, lambda m, x: loss(m, x, m))(attention, x)
    want = nn.value_and_grad(attention, lambda m, x: loss(m, x, reference))(attention, x)
    assert mx.allclose(got[0], want[0], rtol=1e-5)
    assert mx.allclose(got[1]["qkv"]["weight"], want[1]["qkv"]["weight"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_gelu_has_the_values_and_gradient_of_autodiff(dtype: mx.Dtype) -> None:
    # The values of nn.gelu_approx computed in float32, rounded once to the dtype; the
    # written-out derivative is as close to float32 autodiff as bfloat16 autodiff is
    # (float32: within 1e-6 of the largest entry).
    mx.random.seed(5)
    x = (mx.random.normal((4, 300)) * 3).astype(dtype)
    cotangent = mx.random.normal(x.shape).astype(dtype)
    values = gelu_approx(x)
    assert values.dtype == dtype
    assert mx.allclose(values, nn.gelu_approx(x.astype(mx.float32)).astype(dtype),
                       rtol=1e-6, atol=1e-7)

    def grad(fn: Callable[[mx.array], mx.array], x: mx.array, c: mx.array) -> mx.array:
        return mx.vjp(fn, [x], [c])[1][0].astype(mx.float32)

    exact = grad(nn.gelu_approx, x.astype(mx.float32), cotangent.astype(mx.float32))
    got, autodiff = grad(gelu_approx, x, cotangent), grad(nn.gelu_approx, x, cotangent)
    assert got.dtype == mx.float32 and mx.vjp(gelu_approx, [x], [cotangent])[1][0].dtype == dtype
    error = (mx.abs(got - exact).max() / mx.abs(exact).max()).item()
    assert error <= max(1e-6, (mx.abs(autodiff - exact).max() / mx.abs(exact).max()).item())


@pytest.mark.skipif(not kernels_run_here(mx.bfloat16), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize("size", [3 * 70 * 384, 5 * 77])
@pytest.mark.parametrize("skip", [0, 3])
def test_the_cuda_gelu_kernels_compute_the_same_values_and_gradient(
        dtype: mx.Dtype, size: int, skip: int) -> None:
    # 5 * 77 values leave a tail after the chunks of eight; skipping three values of a flat
    # array makes the kernel read from an address that is not 16-byte aligned.
    mx.random.seed(6)
    x = (mx.random.normal((size + skip,)) * 3).astype(dtype)[skip:]
    cotangent = mx.random.normal(x.shape).astype(dtype)
    got = mx.vjp(cuda_gelu, [x], [cotangent])
    want = mx.vjp(ops_gelu, [x], [cotangent])
    for a, b in [(got[0][0], want[0][0]), (got[1][0], want[1][0])]:
        assert a.dtype == dtype
        assert mx.allclose(a.astype(mx.float32), b.astype(mx.float32), rtol=1e-2 if
                           dtype == mx.bfloat16 else 1e-5, atol=1e-5)


@pytest.mark.skipif(not kernels_run_here(mx.bfloat16), reason="needs a CUDA GPU")
def test_the_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # Elsewhere they never run; here the switch is what makes the next test compare the
    # kernels with the portable paths at all.
    monkeypatch.setattr(cuda, "kernels_enabled", False)
    assert not kernels_run_here(mx.bfloat16)


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", True), ("0", False)])
def test_the_environment_switches_the_kernels_off(value: str | None, enabled: bool) -> None:
    # A user whose GPU or CUDA refuses a kernel runs the portable paths instead.
    env = {k: v for k, v in os.environ.items() if k != cuda.KERNELS_ENV}
    if value is not None:
        env[cuda.KERNELS_ENV] = value
    shown = subprocess.run([sys.executable, "-c", "from saga_model import cuda; "
                            "print(cuda.kernels_enabled)"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert shown == str(enabled)


@pytest.mark.skipif(not kernels_run_here(mx.bfloat16), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, 2e-3), (mx.bfloat16, 3e-2)])
def test_a_training_step_with_the_kernels_has_the_portable_paths_gradients(
        dtype: mx.Dtype, tolerance: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # The seed shape, every CUDA kernel of the project (loss, GELU, RMSNorm, embedding,
    # heads, attention) against all of them switched off; float32 matrix products round to
    # TF32 on both sides.
    cfg = ModelConfig.from_dict({**PRESETS["seed"].to_dict(), "context_length": 128})
    mx.random.seed(9)
    model = StoryModel(cfg)
    model.compute_dtype = dtype
    batch = mx.random.randint(0, cfg.vocab_size, (16, 129))

    def loss_and_grads() -> tuple[mx.array, dict]:
        loss, grads = nn.value_and_grad(model, training_loss)(model, batch)
        mx.eval(loss, grads)
        return loss, dict(tree_flatten(grads))

    loss, grads = loss_and_grads()
    monkeypatch.setattr(cuda, "kernels_enabled", False)
    want_loss, want_grads = loss_and_grads()
    assert abs(loss.item() - want_loss.item()) <= tolerance * abs(want_loss.item())
    errors = {name: relative_error(grads[name], want) for name, want in want_grads.items()}
    assert max(errors.values()) <= tolerance, sorted(errors.items(), key=lambda e: -e[1])[:3]
