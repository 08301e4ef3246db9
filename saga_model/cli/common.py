"""What every command shares: one-line errors, exit codes, version and progress display."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from .._blas import blas_in_use
from ..errors import SagaError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are a single line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def version_text(prog: str) -> str:
    """``prog`` version plus the MLX version, default device and BLAS in use."""
    import mlx.core as mx

    from .. import __version__

    return (f"{prog} {__version__} (mlx {mx.__version__}, device {mx.default_device()}, "
            f"BLAS: {blas_in_use})")


def run_command(prog: str, main: Callable[[Sequence[str] | None], int],
                argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main`` and exit: :class:`SagaError` becomes one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except SagaError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code)


class StatusLine:
    """A status line on stderr: rewritten in place on a terminal, printed sparingly otherwise."""

    def __init__(self, quiet: bool = False, min_interval: float = 5.0) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._open = False

    def update(self, text: str, force: bool = False) -> None:
        """Show ``text`` as the current status."""
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
            self._open = True
        elif force or time.monotonic() - self._last >= self.min_interval:
            print(text, file=sys.stderr, flush=True)
            self._last = time.monotonic()

    def print(self, text: str) -> None:
        """Print a permanent line (above the status line on a terminal)."""
        if self.quiet:
            return
        if self._open:
            sys.stderr.write("\r\033[K")
            self._open = False
        print(text, file=sys.stderr, flush=True)

    def progress(self, label: str, done: int, total: int) -> None:
        """Progress of a long preparation step."""
        width = 24
        filled = width * done // max(1, total)
        self.update(f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
                    force=done >= total)

    def close(self) -> None:
        """End the status line."""
        if self._open:
            sys.stderr.write("\n")
            self._open = False
