"""The NumPy CPU decoder gives the MLX model's outputs, and the decoder choice is wired up."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from saga_model import SamplingOptions, StoryModel, StoryRequest, load_model, tell_story
from saga_model.config import PRESETS, ModelConfig
from saga_model.errors import SagaError
from saga_model.fast_decode import NumpyDecoder, _bundled_openblas
from saga_model.generate import MLXDecoder, generate_tokens, make_decoder
from saga_model.paths import default_model_dir
from saga_model.tokenizer import StoryTokenizer

ATOL = 1e-4


def random_model(seed: int, **overrides: object) -> StoryModel:
    """A randomly initialised model of the tiny preset (with ``overrides`` to its config)."""
    mx.random.seed(seed)
    model = StoryModel(ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), **overrides}))
    model.eval()
    mx.eval(model.parameters())
    return model


@pytest.fixture(scope="module")
def shipped() -> tuple[StoryModel, StoryTokenizer]:
    return load_model(default_model_dir())


def shipped_with_context(shipped: tuple[StoryModel, StoryTokenizer], context: int
                         ) -> StoryModel:
    """The shipped weights in a model with a shorter context, to force context shifts."""
    model, _ = shipped
    small = StoryModel(ModelConfig.from_dict({**model.config.to_dict(),
                                              "context_length": context}))
    small.update(model.parameters())
    small.eval()
    return small


def assert_same_logits(model: StoryModel, prompt: list[int], steps: list[int]) -> None:
    """Prefill then step through ``steps``; both decoders must agree at every position."""
    reference, fast = MLXDecoder(model), NumpyDecoder(model)
    expected, got = reference.prefill(prompt), fast.prefill(prompt)
    assert got.shape == expected.shape == (model.config.vocab_size,)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    for token in steps:
        np.testing.assert_allclose(fast.step(token), reference.step(token), atol=ATOL, rtol=0)


def test_random_model_logits_match_mlx() -> None:
    model = random_model(0, context_length=64)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, model.config.vocab_size, 20).tolist()
    assert_same_logits(model, prompt, rng.integers(0, model.config.vocab_size, 43).tolist())
    # a second prefill resets the cache
    assert_same_logits(model, prompt[:1], prompt[1:])


def test_tied_embeddings_and_several_layers_match_mlx() -> None:
    model = random_model(1, n_layers=2, n_heads=4, d_model=64, ffn_dim=96, tie_embeddings=True,
                         rope_theta=500.0, context_length=40)
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, model.config.vocab_size, 7).tolist()
    assert_same_logits(model, prompt, rng.integers(0, model.config.vocab_size, 30).tolist())


def test_shipped_model_logits_match_mlx(shipped: tuple[StoryModel, StoryTokenizer]) -> None:
    model, tokenizer = shipped
    prompt = tokenizer.encode(StoryRequest.create(theme="friendship").prompt() + "Once upon")
    greedy = []
    decoder = MLXDecoder(model)
    logits = decoder.prefill(prompt)
    for _ in range(60):
        greedy.append(int(np.argmax(logits)))
        logits = decoder.step(greedy[-1])
    assert_same_logits(model, prompt, greedy)


def test_greedy_generation_is_identical_across_context_shifts(
        shipped: tuple[StoryModel, StoryTokenizer]) -> None:
    model = shipped_with_context(shipped, 48)
    _, tokenizer = shipped
    prefix = tokenizer.encode(StoryRequest.create(theme="adventure").prompt())
    prompt = prefix + tokenizer.encode("Once upon a time, a little fox")
    options = SamplingOptions(temperature=0, max_tokens=150)
    runs = [list(generate_tokens(decoder, prompt, options, keep_prefix=len(prefix)))
            for decoder in (MLXDecoder(model), NumpyDecoder(model))]
    assert len(runs[0]) == 150  # no stop id: the story runs through several context shifts
    assert runs[0] == runs[1]


def test_same_seed_gives_the_same_story_with_either_backend(
        shipped: tuple[StoryModel, StoryTokenizer], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = shipped
    request = StoryRequest.create(theme="kindness", characters="Mia")
    stories = {}
    for backend in ("mlx", "numpy"):
        monkeypatch.setenv("GRAIN_DECODER", backend)
        stories[backend] = tell_story(model, tokenizer, request,
                                      SamplingOptions(seed=11, max_tokens=120))
    assert len(stories["numpy"].split()) > 10
    assert stories["numpy"] == stories["mlx"]


def test_make_decoder_picks_numpy_on_cpu_and_obeys_the_override(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_model(2)
    monkeypatch.delenv("GRAIN_DECODER", raising=False)
    assert mx.default_device().type == mx.DeviceType.cpu  # the test machines have no GPU
    assert isinstance(make_decoder(model), NumpyDecoder)
    monkeypatch.setenv("GRAIN_DECODER", "mlx")
    assert isinstance(make_decoder(model), MLXDecoder)
    monkeypatch.setenv("GRAIN_DECODER", " NumPy ")
    assert isinstance(make_decoder(model), NumpyDecoder)
    monkeypatch.setenv("GRAIN_DECODER", "cuda")
    with pytest.raises(SagaError, match="GRAIN_DECODER"):
        make_decoder(model)


def test_bfloat16_models_keep_the_mlx_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAIN_DECODER", raising=False)
    model = random_model(3)
    model.compute_dtype = mx.bfloat16
    assert isinstance(make_decoder(model), MLXDecoder)


def test_decoder_rejects_overflowing_the_context() -> None:
    model = random_model(4, context_length=8)
    decoder = NumpyDecoder(model)
    with pytest.raises(SagaError, match="prefill"):
        decoder.prefill([])
    with pytest.raises(SagaError, match="prefill"):
        decoder.prefill(list(range(9)))
    decoder.prefill(list(range(6)))
    decoder.step(1)
    decoder.step(2)
    with pytest.raises(SagaError, match="full"):
        decoder.step(3)


def test_blas_thread_count_is_restored_after_each_call() -> None:
    model = random_model(5)
    decoder = NumpyDecoder(model)
    before = [get() for get, _ in _bundled_openblas()]
    decoder.prefill([1, 2, 3])
    decoder.step(4)
    assert [get() for get, _ in _bundled_openblas()] == before
