"""The training loss with the logits' gradient made in the forward pass (saga_model.head_loss).

On the CPU the wrapper runs around plain MLX operations with the kernel's contract; on a CUDA
GPU (the device machine) the kernel itself is checked against them and a whole training step
against autodiff.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import pytest
from kernel_helpers import ON_A_CUDA_GPU, relative_error

from saga_model import train as train_module
from saga_model.config import PRESETS, ModelConfig, TrainConfig
from saga_model.head_loss import (
    cuda_losses_and_gradient,
    fused_head_loss_available,
    make_head_loss,
)
from saga_model.model import StoryModel
from saga_model.train import build_train_step, make_optimizer, token_losses

ON_CUDA = fused_head_loss_available(mx.bfloat16, 8000)


def plain_losses_and_gradient(logits: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
    """The kernel's contract in plain MLX operations, in float32."""
    wide = logits.astype(mx.float32)
    target_logits = mx.take_along_axis(wide, targets[:, None], axis=-1)[:, 0]
    onehot = mx.arange(logits.shape[-1])[None, :] == targets[:, None]
    grad = mx.softmax(wide, axis=-1) - onehot.astype(mx.float32)
    return mx.logsumexp(wide, axis=-1) - target_logits, grad.astype(logits.dtype)


def autodiff_loss(hidden: mx.array, weight: mx.array, targets: mx.array) -> mx.array:
    """The training loss as autodiff sees it elsewhere: the model's head, then token_losses."""
    return token_losses(hidden @ weight.astype(hidden.dtype).T, targets).sum()


def inputs(dtype: mx.Dtype, rows: int = 48, dims: int = 16, vocab: int = 200
           ) -> tuple[mx.array, mx.array, mx.array]:
    mx.random.seed(3)
    hidden = (mx.random.normal((rows, dims)) * 2).astype(dtype)
    weight = mx.random.normal((vocab, dims)) * 0.5
    targets = mx.random.randint(0, vocab, (rows,))
    return hidden, weight, targets


#: float32 matrix products on a CUDA GPU round their inputs to TF32 (10-bit mantissas).
FLOAT32 = 1e-3 if mx.default_device().type == mx.DeviceType.gpu else 1e-5


@pytest.mark.parametrize(("dtype", "tolerance"), [(mx.float32, FLOAT32), (mx.bfloat16, 2e-2)])
def test_the_wrapper_gives_autodiffs_loss_and_gradients(dtype: mx.Dtype, tolerance: float
                                                        ) -> None:
    # The loss is scaled afterwards, as the training step divides it by the number of
    # targets: the wrapper must carry that cotangent into both gradients. bfloat16 gradients
    # are rounded twice (the logits' gradient, then the products), so within 2% of the
    # largest entry.
    hidden, weight, targets = inputs(dtype)
    head_loss = make_head_loss(plain_losses_and_gradient)

    def scaled(fn: Callable[..., mx.array]) -> Callable[[mx.array, mx.array], mx.array]:
        return lambda h, w: fn(h, w, targets) * 0.37

    got = mx.value_and_grad(scaled(head_loss), argnums=(0, 1))(hidden, weight)
    want = mx.value_and_grad(scaled(autodiff_loss), argnums=(0, 1))(hidden, weight)
    # The loss is accumulated in float32 whatever the logits' dtype.
    exact = token_losses((hidden @ weight.astype(dtype).T).astype(mx.float32), targets).sum()
    assert got[0].dtype == mx.float32
    assert abs(got[0].item() - exact.item() * 0.37) <= FLOAT32 * abs(want[0].item())
    (d_hidden, d_weight), (want_hidden, want_weight) = got[1], want[1]
    assert d_hidden.dtype == dtype and d_weight.dtype == mx.float32
    assert relative_error(d_hidden, want_hidden) <= tolerance
    assert relative_error(d_weight, want_weight) <= tolerance


def test_the_kernel_is_chosen_only_where_it_runs() -> None:
    assert fused_head_loss_available(mx.bfloat16, 8000) == ON_A_CUDA_GPU
    assert fused_head_loss_available(mx.float32, 8000) == ON_A_CUDA_GPU
    assert not fused_head_loss_available(mx.float16, 8000)
    assert not fused_head_loss_available(mx.bfloat16, 8001)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_the_cuda_kernel_keeps_the_contract(dtype: mx.Dtype) -> None:
    mx.random.seed(0)
    logits = (mx.random.normal((1000, 8000)) * 6).astype(dtype)
    logits[3, 17] = 80.0  # one dominant logit: the row's maximum must be subtracted
    targets = mx.random.randint(0, 8000, (1000,))
    targets[3] = 17
    losses, grad = cuda_losses_and_gradient(logits, targets)
    want_losses, want_grad = plain_losses_and_gradient(logits, targets)
    assert losses.dtype == mx.float32 and grad.dtype == dtype
    assert mx.allclose(losses, want_losses, rtol=1e-5, atol=1e-4)
    assert mx.allclose(grad.astype(mx.float32), want_grad.astype(mx.float32),
                       rtol=1e-2 if dtype == mx.bfloat16 else 1e-5, atol=1e-6)
    # A row that starts off the 16-byte grid takes the unaligned path.
    _, shifted = cuda_losses_and_gradient(logits.reshape(-1)[4:4 + 8000 * 10].reshape(10, 8000),
                                          targets[:10])
    assert mx.allclose(shifted.astype(mx.float32),
                       plain_losses_and_gradient(logits.reshape(-1)[4:4 + 80000]
                                                 .reshape(10, 8000), targets[:10])[1]
                       .astype(mx.float32), rtol=1e-2, atol=1e-6)


@pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA GPU")
def test_a_bfloat16_step_with_the_kernel_matches_autodiff(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    cfg = ModelConfig.from_dict({**PRESETS["seed"].to_dict(), "context_length": 128})
    batch = mx.random.randint(0, cfg.vocab_size, (8, 129))

    def three_steps() -> list[float]:
        mx.random.seed(0)
        model = StoryModel(cfg)
        model.compute_dtype = mx.bfloat16
        optimizer = make_optimizer(TrainConfig(precision="bfloat16"))
        step, state = build_train_step(model, optimizer, 1.0)
        losses = []
        for _ in range(3):
            loss, _ = step(batch)
            mx.eval(state, loss)
            losses.append(loss.item())
        return losses

    fused = three_steps()
    monkeypatch.setattr(train_module, "fused_head_loss_available", lambda *_: False)
    plain = three_steps()
    assert fused[0] == pytest.approx(plain[0], rel=1e-3)
    assert fused == pytest.approx(plain, rel=1e-2)
