"""The story measures of the judge report: variety, repetition, endings, names, perplexity."""

from __future__ import annotations

import math

import pytest
from judge_helpers import write_tiny_gguf

from saga_model.judge import Judge
from saga_model.judge.metrics import (
    JudgedStory,
    distinct,
    ends_finished,
    is_repetitive,
    quality_row,
    quality_table,
    words,
)


def test_words_are_lower_case_letter_runs_with_inner_apostrophes() -> None:
    assert words('"Don\'t go!" said Mia. It\'s 3 o\'clock.') == [
        "don't", "go", "said", "mia", "it's", "o'clock"]


def test_distinct_counts_unique_ngrams_over_all() -> None:
    tokens = ["the", "cat", "and", "the", "cat", "and", "the", "dog"]
    assert distinct(tokens, 2) == pytest.approx(4 / 7)
    assert distinct(tokens, 3) == pytest.approx(4 / 6)
    assert distinct(["one"], 2) is None


def test_a_story_is_repetitive_when_a_four_word_run_comes_three_times() -> None:
    twice = words("They are very sorry. They are very sorry. The end.")
    thrice = words("They are very sorry. They are very sorry. They are very sorry.")
    assert not is_repetitive(twice) and is_repetitive(thrice)


def test_a_story_ends_finished_on_a_closed_sentence_it_stopped_by_itself() -> None:
    assert ends_finished(JudgedStory('They hugged. "Thank you!"\n'))
    assert ends_finished(JudgedStory("The end?"))
    assert not ends_finished(JudgedStory("And then they"))
    assert not ends_finished(JudgedStory("They hugged.", stopped=False))


def test_quality_row_pools_judge_tokens_and_checks_names(tmp_path) -> None:
    judge = Judge.load(write_tiny_gguf(tmp_path / "tiny.gguf"))
    stories = [JudgedStory("Zara and Milo ran home. They were happy.", ("Zara", "Milo")),
               JudgedStory("Milo sat. Milo sat. Milo sat. Milo sat.", ("Zara",)),
               JudgedStory("The sun was warm and the sky was blue and")]
    row = quality_row("sample", stories, judge)
    scores = judge.nats([s.text for s in stories])
    tokens = sum(t for _, t in scores)
    assert row.judge_tokens == tokens
    assert row.judge_perplexity == pytest.approx(math.exp(sum(n for n, _ in scores) / tokens))
    assert row.names == 0.5  # one of the two stories asked for names uses them all
    assert row.repetitive == pytest.approx(1 / 3)
    assert row.finished == pytest.approx(2 / 3)
    assert row.words == pytest.approx((8 + 8 + 10) / 3)
    table = quality_table([row])
    assert table[1].startswith("sample") and "50%" in table[1]
