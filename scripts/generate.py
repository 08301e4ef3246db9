"""Tell a story (same as ``grain-generate``).

    python scripts/generate.py --model_path output/final_model.npz \\
        --tokenizer_path output/tokenizer.json --theme adventure --tone cheerful \\
        --genre fantasy --characters "Alice,Bob"
"""

from saga_model.cli.generate import run

if __name__ == "__main__":
    run()
