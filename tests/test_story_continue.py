"""Continuing a finished story writes a real continuation (the story session, no UI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import saga_model
from saga_model import SagaError, SamplingOptions
from tui.session import CONTINUE_TOKENS, StoryJob, continuation


@pytest.fixture(scope="module")
def shipped() -> tuple[object, object]:
    """The shipped model: it has learnt to close a story, which is what made continue empty."""
    return saga_model.load_model(saga_model.shipped_model())


def test_continue_writes_a_new_paragraph_instead_of_ending_at_once(shipped) -> None:
    model, tokenizer = shipped
    request, options = saga_model.story_request(seed=199501, max_tokens=400)
    story = saga_model.tell_story(model, tokenizer, request, options).strip()
    job = continuation(StoryJob(request, options, Path("model"), "shipped model"), story,
                       None, "The ball")
    assert job.title == "The ball (continued)" and job.request.opening == story + "\n"
    for seed in range(4):  # before: "done · 1 token" for 4 of 5 seeds
        pieces = list(saga_model.stream_story(model, tokenizer, job.request,
                                              replace(job.options, seed=seed)))
        assert pieces[-1].n_tokens >= CONTINUE_TOKENS
        new = "".join(piece.text for piece in pieces)[len(story) + 1:]
        assert len(new.split()) > 30 and "\ufffd" not in new


def test_a_lower_maximum_is_honoured_and_min_tokens_is_checked(shipped) -> None:
    model, tokenizer = shipped
    request, options = saga_model.story_request(seed=5, max_tokens=30, opening="Mia smiled.")
    job = continuation(StoryJob(request, options, Path("model"), "m"), "Mia smiled. The end.",
                       None, "t")
    assert job.options.min_tokens == 30
    pieces = list(saga_model.stream_story(model, tokenizer, job.request, job.options))
    assert pieces[-1].n_tokens == 30 and pieces[-1].finish_reason == "length"
    with pytest.raises(SagaError, match="min_tokens"):
        SamplingOptions(min_tokens=-1)
