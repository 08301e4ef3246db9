"""The teacher-corpus tool's prompts and filters (tools/teacher_corpus.py; no teacher model)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "teacher_corpus.py"


@pytest.fixture(scope="module")
def teacher():
    spec = importlib.util.spec_from_file_location("teacher_corpus", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_prompts_are_reproducible_and_name_every_character(teacher) -> None:
    prompts = teacher.make_prompts(300, seed=3)
    assert prompts == teacher.make_prompts(300, seed=3)
    assert prompts != teacher.make_prompts(300, seed=4)
    by_count = {n: [p for p in prompts if len(p.names) == n] for n in (0, 1, 2)}
    assert all(by_count.values())  # stories without names, with one and with two
    assert all("main character" not in p.text for p in by_count[0])
    assert all(f"The main character is {p.names[0]}" in p.text for p in by_count[1]
               if "animal" not in p.text)
    assert all(all(name in p.text for name in p.names) for p in prompts)


def test_filters_keep_a_simple_story_and_say_why_others_go(teacher) -> None:
    vocabulary = {"the", "cat", "sat", "on", "mat", "and", "was", "happy", "a", "big", "ball",
                  "had"}
    story = "Zara and the cat sat on the mat. " * 2 + "The cat was happy. Zara had a big ball."
    assert teacher.rejection(story, ("Zara",), vocabulary, 10, 100, 0.97) is None
    assert teacher.rejection(story, ("Milo",), vocabulary, 10, 100, 0.97) == "names missing"
    assert teacher.rejection(story[:-1] + ",", (), vocabulary, 10, 100, 0.97) == "unfinished"
    assert teacher.rejection(story, (), vocabulary, 50, 100, 0.97) == "length"
    looping = "Zara sat on the mat. " * 3 + "The cat was happy."
    assert teacher.rejection(looping, (), vocabulary, 10, 100, 0.97) == "repetition"
    odd = story.replace("big ball", "gargantuan zeppelin")
    assert teacher.rejection(odd, (), vocabulary, 10, 100, 0.97) == "vocabulary"
    assert teacher.tidy("**The Lost Ball**\n\nHere is a story:\nZara had a ball.") == (
        "Zara had a ball.")
