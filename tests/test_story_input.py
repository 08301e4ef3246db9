"""The one builder from user input to a request and sampling options (saga_model.story_input)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import saga_model
from saga_model import SagaError, SamplingOptions, StoryRequest, story_request


def test_empty_choices_mean_any_and_left_out_options_keep_the_defaults() -> None:
    request, options = story_request("", "Happy", None, ["Zara", "Milo"], "Once  upon",
                                     temperature=None, top_p=0.5, seed=3)
    assert request == StoryRequest(tone="cheerful", characters=("Zara", "Milo"),
                                   opening="Once upon")
    assert options == SamplingOptions(top_p=0.5, seed=3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"theme": "spaceships"}, "choose one of"),
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"temperature": "hot"}, "invalid sampling options"),
    ({"warmth": 1.0}, "unknown sampling option"),
])
def test_bad_input_is_a_saga_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SagaError, match=message):
        story_request(**kwargs)  # type: ignore[arg-type]


def test_the_defaults_import_without_the_model_code() -> None:
    code = ("import sys, saga_model; saga_model.SamplingOptions(); "
            "print(sorted(m for m in ('mlx.core', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    assert saga_model.generate.SamplingOptions is SamplingOptions  # one class, one set of defaults
