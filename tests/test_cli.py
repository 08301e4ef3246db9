"""The command-line tools, run in a subprocess exactly as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import one_line_story, peak_rss_mb, run_cli

from saga_model import checkpoint as ckpt

SEED_GENERATE = ["--theme", "adventure", "--tone", "cheerful", "--genre", "fantasy",
                 "--characters", "Alice,Bob"]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_seed_commands_work_as_written(tiny_run: Path) -> None:
    """`scripts/train.py --data_dir --output_dir` ran in the fixture; now the seed generate line."""
    assert {ckpt.FINAL_NPZ, ckpt.TOKENIZER, ckpt.CONFIG, "metrics.jsonl"} <= {
        p.name for p in tiny_run.iterdir()}
    result = run_cli("scripts/generate.py", "--model_path", str(tiny_run / ckpt.FINAL_NPZ),
                     "--tokenizer_path", str(tiny_run / ckpt.TOKENIZER), *SEED_GENERATE)
    assert result.returncode == 0, result.stderr
    # Unseeded, so the barely trained model may close its story after two words: a story was
    # printed, no more can be asked of it (length and content: the seeded tests).
    assert result.stdout.strip() and not result.stderr


def test_generate_is_reproducible_with_a_seed(tiny_run: Path) -> None:
    args = ["-m", "saga_model.cli.generate", "--model_path", str(tiny_run), "--seed", "3",
            "--max_tokens", "30", "--opening", "Once upon a time", "--stats"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("Once upon a time")
    assert "tokens/s" in first.stderr


def test_resume_requires_the_flag_and_then_continues(tiny_model_dir: Path,
                                                     corpus_dir: Path) -> None:
    again = run_cli("scripts/train.py", "--data_dir", str(corpus_dir),
                    "--output_dir", str(tiny_model_dir))
    assert_one_line_error(again, "already holds a training run", "--resume")
    resumed = run_cli("scripts/train.py", "--output_dir", str(tiny_model_dir), "--resume",
                      "--steps", "100", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 100" in resumed.stdout
    assert ckpt.list_checkpoints(tiny_model_dir)[-1].name == "step_0000100"


@pytest.mark.parametrize(("args", "fragments"), [
    (["--data_dir", "/definitely/not/here"], ["data path not found"]),
    (["--data_dir", "{empty}"], ["no .txt files"]),
    (["--data_dir", "{blank}"], ["no stories found"]),
    (["--data_dir", "{corpus}", "--steps", "lots"], ["invalid int value", "--steps"]),
    (["--data_dir", "{corpus}", "--steps", "-3"], ["invalid value for steps"]),
    (["--data_dir", "{corpus}", "--config", "huge"], ["unknown --config"]),
    (["--output_dir", "{empty}", "--resume"], ["nothing to resume"]),
    ([], ["--data_dir is required"]),
])
def test_train_errors_are_one_clear_line(tmp_path: Path, corpus_dir: Path, args: list[str],
                                         fragments: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("\n<|endoftext|>\n\n")
    paths = {"empty": tmp_path / "empty", "blank": tmp_path / "blank", "corpus": corpus_dir}
    args = [a.format(**paths) for a in args]
    result = run_cli("scripts/train.py", "--output_dir", str(tmp_path / "out"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out" / ckpt.FINAL_NPZ).exists()


@pytest.mark.parametrize(("args", "fragments"), [
    (["--theme", "pirates"], ["unknown theme 'pirates'", "adventure"]),
    (["--genre", "western"], ["unknown genre", "fantasy"]),
    (["--characters", "R2-D2!"], ["R2-D2!"]),
    (["--temperature", "-1"], ["temperature"]),
    (["--model_path", "{corrupt}"], ["not a valid model file"]),
    (["--model_path", "{lonely}"], ["tokenizer not found"]),
    (["--model_path", "/no/such/model.npz"], ["model not found"]),
])
def test_generate_errors_are_one_clear_line(tmp_path: Path, tiny_run: Path, args: list[str],
                                            fragments: list[str]) -> None:
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    (tmp_path / "lonely.npz").write_bytes((tiny_run / ckpt.FINAL_NPZ).read_bytes())
    paths = {"corrupt": tmp_path / "corrupt.npz", "lonely": tmp_path / "lonely.npz"}
    args = [a.format(**paths) for a in args]
    if "--model_path" not in args:
        args += ["--model_path", str(tiny_run)]
    assert_one_line_error(run_cli("scripts/generate.py", *args), *fragments)


def test_version_shows_the_blas_in_use() -> None:
    result = run_cli("-m", "saga_model.cli.train", "--version")
    assert result.returncode == 0
    assert "BLAS:" in result.stdout and "mlx" in result.stdout
    plain = run_cli("-m", "saga_model.cli.generate", "--version",
                    env={"GRAIN_NO_OPENBLAS": "1"})
    assert "GRAIN_NO_OPENBLAS=1" in plain.stdout or "Accelerate" in plain.stdout


def test_list_shows_the_choices() -> None:
    result = run_cli("-m", "saga_model.cli.generate", "--list")
    assert result.returncode == 0
    assert "themes: adventure" in result.stdout and "animal fable" in result.stdout


def test_eval_streams_a_long_one_line_file_in_bounded_memory(tiny_run: Path,
                                                             tmp_path: Path) -> None:
    # Read and tokenized whole, these 4 MB (a million tokens) took 700 MB before scoring began.
    story = tmp_path / "long.txt"
    story.write_text(one_line_story(4_000_000) + "\n")
    peak, err = peak_rss_mb("-m", "saga_model.cli.eval", "--model_path", str(tiny_run),
                            "--text", str(story), until="scoring long.txt [")
    assert "scoring long.txt [" in err, err
    assert peak < 350, f"peak RSS {peak:.0f} MB"


def test_streamed_text_loss_equals_scoring_the_whole_file(tiny_run: Path, corpus_dir: Path,
                                                          tmp_path: Path) -> None:
    import numpy as np

    from saga_model.data import PreparedData, TokenSplit, read_stories, unconditioned_example
    from saga_model.evaluate import text_loss
    from saga_model.train import evaluate

    text = tmp_path / "stories.txt"
    text.write_text((corpus_dir / "valid.txt").read_text() + "\n<|endoftext|>\n"
                    + one_line_story(100_000) + "\n<|endoftext|>\n"
                    + (corpus_dir / "valid.txt").read_text())
    model, tokenizer = ckpt.load_model(tiny_run)
    stories = read_stories(text)
    ids = tokenizer.encode_batch([unconditioned_example(s) for s in stories])
    split = TokenSplit(np.concatenate([np.asarray(i, dtype=np.uint16) for i in ids]),
                       np.cumsum([0] + [len(i) for i in ids[:-1]]),
                       sum(len(s.encode()) for s in stories))
    for batch_size in (None, 5):  # the default: 16 windows of 128 tokens
        whole = evaluate(model, PreparedData(split, split, Path()), tokenizer,
                         model.config.context_length, batch_size or 16)
        streamed = text_loss(model, tokenizer, text, batch_size)
        assert (streamed.stories, streamed.tokens) == (16, split.n_tokens)
        assert (streamed.loss, streamed.bits_per_byte) == whole


def test_eval_shows_its_progress_on_a_text_file(tiny_run: Path, corpus_dir: Path) -> None:
    result = run_cli("-m", "saga_model.cli.eval", "--model_path", str(tiny_run), "--text",
                     str(corpus_dir / "valid.txt"))
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("scoring valid.txt [####") and last.split()[-1].count("/") == 1
    done, total = last.split()[-1].split("/")
    assert done == total and int(total) > 0
