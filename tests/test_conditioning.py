"""How training examples carry the control prefix and the swapped names."""

from __future__ import annotations

import random

from saga_model import labels as lab
from saga_model.data import conditioned_example

STORY = ("Once upon a time, a girl named Lily met a boy named Tom. Lily smiled at Tom and "
         "they played ball in the sunny park. Tom laughed.")
LABELS = lab.StoryLabels("friendship", "cheerful", "everyday life", ("Lily", "Tom"))


def split_example(text: str) -> tuple[str, str]:
    prefix, story = text.split(lab.STORY_START)
    return prefix, story.removesuffix(lab.END_OF_STORY)


def test_names_in_the_prefix_are_the_story_names() -> None:
    swapped = with_field = 0
    for seed in range(300):
        prefix, story = split_example(
            conditioned_example(STORY, LABELS, random.Random(seed), 0.3, 0.5))
        renamed = not lab.mentions(story, "characters", "Lily")
        assert renamed == (not lab.mentions(story, "characters", "Tom"))  # both, or neither
        if "<|characters|>" in prefix:
            with_field += 1
            names = prefix.split("<|characters|>")[1].strip().split(", ")
            assert len(names) == 2 and all(f" {name}" in story for name in names)
        swapped += renamed
    assert 120 < swapped < 180  # name_swap 0.5
    assert 180 < with_field < 240  # field dropout 0.3


def test_no_dropout_no_swap_keeps_the_story() -> None:
    text = conditioned_example(STORY, LABELS, random.Random(0), 0.0, 0.0)
    assert text == lab.control_prefix(LABELS) + STORY + lab.END_OF_STORY
