"""``grain-data``: get story datasets (TinyStories) ready for ``grain-train --data_dir``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..download import BASE_URL_ENV, DATASETS, DEFAULT_BASE_URL, DEFAULT_VARIANT, download_dataset
from .common import ArgumentParser, StatusLine, run_command, version_text

PROG = "grain-data"


def build_parser() -> ArgumentParser:
    """The command's flags."""
    parser = ArgumentParser(prog=PROG, description="Get story datasets for Grain de Saga.")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    variants = sorted({v for variants in DATASETS.values() for v in variants})
    download = commands.add_parser(
        "download", help="download a dataset from the Hugging Face hub",
        description="Download a dataset from the Hugging Face hub (resumable; files are checked "
                    "and recorded in a manifest), ready for grain-train --data_dir.")
    download.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    download.add_argument("--variant", choices=variants, default=DEFAULT_VARIANT,
                          help=f"which variant (default {DEFAULT_VARIANT}; see docs/data.md)")
    download.add_argument("--dest", help="folder for the files (default: data/<dataset>)")
    download.add_argument("--base_url", help=f"address of the hub or a mirror (default: "
                          f"${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    download.add_argument("--quiet", action="store_true", help="print only errors and the result")
    return parser


class _TransferProgress:
    """Progress callback showing megabytes, percentage and speed on a status line."""

    def __init__(self, status: StatusLine) -> None:
        self.status = status
        self.label = ""
        self.started = 0.0
        self.first = 0

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if label != self.label:
            self.label, self.started, self.first = label, now, done
        rate = (done - self.first) / max(now - self.started, 1e-6)
        size = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB ({100 * done // total}%)" if total \
            else f"{done / 1e6:,.1f} MB"
        self.status.update(f"{label}: {size}, {rate / 1e6:,.1f} MB/s",
                           force=bool(total) and done >= total)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``grain-data``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text(PROG))
        return 0
    if args.command is None:
        parser.error("choose a command: download")
    dest = Path(args.dest or Path("data") / args.dataset)
    status = StatusLine(quiet=args.quiet)
    try:
        download_dataset(args.dataset, args.variant, dest, base=args.base_url,
                         progress=_TransferProgress(status), log=status.print)
    finally:
        status.close()
    print(f"ready: grain-train --data_dir {dest}")
    return 0


def run() -> None:
    """Console-script entry point."""
    run_command(PROG, main)


if __name__ == "__main__":
    run()
