"""Repetition processors (penalties over a window, no-repeat n-grams) and their options."""

from __future__ import annotations

import numpy as np
import pytest

from saga_model import SamplingOptions, StoryModel, StoryRequest, load_model, tell_story
from saga_model.errors import SagaError
from saga_model.generate import NoRepeatNgram, penalize_recent, sampling_processors
from saga_model.paths import default_model_dir
from saga_model.tokenizer import StoryTokenizer


def test_presence_penalty_lowers_each_recent_token_once_within_the_window() -> None:
    logits = np.zeros(6)
    penalize_recent(repetition=1.0, presence=0.5, window=3)([1, 2, 3, 3], logits)
    assert logits.tolist() == [0.0, 0.0, -0.5, -0.5, 0.0, 0.0]  # token 1 left the window


def test_repetition_penalty_shrinks_positive_and_grows_negative_logits() -> None:
    logits = np.array([2.0, -2.0, 1.0])
    penalize_recent(repetition=2.0, presence=0.25, window=8)([0, 1], logits)
    assert logits.tolist() == [0.75, -4.25, 1.0]


def test_no_repeat_ngram_bans_only_tokens_that_would_repeat_a_run() -> None:
    ban = NoRepeatNgram(3)
    story = [5, 6, 7, 9, 5, 6]
    logits = np.zeros(10)
    ban(story, logits)
    assert np.isinf(logits[7]) and np.isfinite(np.delete(logits, 7)).all()
    # Incremental use, as during generation: earlier runs stay remembered.
    story += [8, 5]
    logits = np.zeros(10)
    ban(story, logits)
    assert np.isfinite(logits).all()  # (8, 5) was never followed by anything
    story.append(6)
    logits = np.zeros(10)
    ban(story, logits)
    assert np.isinf(logits[[7, 8]]).all()  # (5, 6) was followed by 7 and by 8


def test_processors_follow_the_options() -> None:
    assert sampling_processors(SamplingOptions(repetition_penalty=1.0, presence_penalty=0.0,
                                               no_repeat_ngram=0)) == []
    both = sampling_processors(SamplingOptions(presence_penalty=0.3, no_repeat_ngram=4))
    assert len(both) == 2 and isinstance(both[1], NoRepeatNgram) and both[1].n == 4


@pytest.mark.parametrize("field, value", [("presence_penalty", -0.1), ("no_repeat_ngram", 1),
                                          ("no_repeat_ngram", -2), ("repetition_window", 0)])
def test_bad_repetition_options_are_refused(field: str, value: float) -> None:
    with pytest.raises(SagaError, match=field):
        SamplingOptions(**{field: value})


@pytest.fixture(scope="module")
def shipped() -> tuple[StoryModel, StoryTokenizer]:
    return load_model(default_model_dir())


def test_no_repeat_ngram_story_never_repeats_a_run_and_backends_agree(
        shipped: tuple[StoryModel, StoryTokenizer], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = shipped
    request = StoryRequest.create(theme="friendship", characters="Zara")
    options = SamplingOptions(seed=5, max_tokens=150, temperature=0.7, top_p=0.9,
                              min_p=0.05, repetition_penalty=1.1, presence_penalty=0.3,
                              no_repeat_ngram=4)
    stories = {}
    for backend in ("mlx", "numpy"):
        monkeypatch.setenv("GRAIN_DECODER", backend)
        stories[backend] = tell_story(model, tokenizer, request, options)
    assert stories["numpy"] == stories["mlx"]
    ids = tokenizer.encode(stories["numpy"])
    runs = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
    assert len(runs) > 50 and len(set(runs)) == len(runs)
