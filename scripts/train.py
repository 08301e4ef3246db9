"""Train a story model (same as ``grain-train``).

    python scripts/train.py --data_dir path/to/stories --output_dir output
"""

from saga_model.cli.train import run

if __name__ == "__main__":
    run()
