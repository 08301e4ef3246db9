"""What every command shares: one-line errors, exit codes, version and progress display."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .._blas import blas_in_use
from ..errors import SagaError
from ..story_input import SAMPLING_FIELDS, SamplingOptions

EXIT_USAGE = 2
#: Words longer than this in an error message (a pasted story as a name) are cut in the middle.
LONGEST_WORD = 120


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are a single line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {shorten(message)} (see --help)\n")


def add_sampling_arguments(parser: argparse.ArgumentParser, max_tokens: int | None = None
                           ) -> None:
    """The sampling flags (every :class:`SamplingOptions` field but the seed), defaulting to
    the options' own defaults (``max_tokens`` may be given another)."""
    defaults = SamplingOptions()
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=finite_float, default=defaults.temperature)
    group.add_argument("--top_k", type=int, default=defaults.top_k, help="0 = off")
    group.add_argument("--top_p", type=finite_float, default=defaults.top_p)
    group.add_argument("--min_p", type=finite_float, default=defaults.min_p)
    group.add_argument("--repetition_penalty", type=finite_float,
                       default=defaults.repetition_penalty)
    group.add_argument("--presence_penalty", type=finite_float, default=defaults.presence_penalty)
    group.add_argument("--repetition_window", type=int, default=defaults.repetition_window,
                       help="recent tokens the two penalties look at")
    group.add_argument("--no_repeat_ngram", type=int, default=defaults.no_repeat_ngram,
                       metavar="N", help="never repeat N tokens in a row (0 = off)")
    group.add_argument("--max_tokens", type=int, default=max_tokens or defaults.max_tokens)
    group.add_argument("--name_boost", type=finite_float, default=defaults.name_boost,
                       help="nudge towards requested names not used yet (0 = off)")
    group.add_argument("--min_tokens", type=int, default=defaults.min_tokens,
                       help="the story does not end before this many new tokens")


def sampling_values(args: argparse.Namespace) -> dict[str, float | int]:
    """The values of the flags of :func:`add_sampling_arguments`, by option name."""
    return {name: getattr(args, name) for name in SAMPLING_FIELDS if name != "seed"}


def version_text(prog: str) -> str:
    """``prog`` version plus the MLX version, default device and BLAS in use."""
    import mlx.core as mx

    from .. import __version__

    return (f"{prog} {__version__} (mlx {mx.__version__}, device {mx.default_device()}, "
            f"BLAS: {blas_in_use()})")


def finite_float(text: str) -> float:
    """``argparse`` type: a number that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {shorten(text)!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def shorten(text: str) -> str:
    """``text`` with every word longer than :data:`LONGEST_WORD` characters cut in the middle."""
    keep = LONGEST_WORD // 2
    return re.sub(rf"\S{{{LONGEST_WORD + 1},}}",
                  lambda m: f"{m.group()[:keep]}...{m.group()[-keep // 2:]}", text)


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file or network operation: what failed, on which path, and why."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    names = [os.fspath(exc.filename)]
    if exc.filename2 is not None:
        names.append(os.fspath(exc.filename2))
    return f"{reason}: {' -> '.join(map(str, names))}"


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _probe_writable(folder: Path, what: str) -> None:
    """Create and delete a file in ``folder``: the only sure test (permissions, read-only
    mounts, ACLs)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".grain-write-test-", dir=folder)
    except OSError as exc:
        raise SagaError(f"cannot write {what} in {folder}: {exc.strerror}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_writable_dir(path: str | os.PathLike[str], flag: str) -> None:
    """Fail before any work unless ``path`` is a folder this process can write in, or one it
    can create (nothing is created here)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SagaError(f"{flag} {path} is a file, not a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise SagaError(f"{flag} {path} cannot be created: {existing} is a file")
    _probe_writable(existing, flag)


def check_writable_file(path: str | os.PathLike[str], flag: str) -> None:
    """Fail before any work unless ``path`` can be written (created or replaced) later."""
    path = Path(path)
    if path.is_dir():
        raise SagaError(f"{flag} {path} is a folder: give a file name")
    check_writable_dir(path.parent, flag)


def run_command(prog: str, main: Callable[[Sequence[str] | None], int],
                argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main`` and exit: :class:`SagaError`, a failed file operation (full disk,
    read-only folder) and running out of memory become one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except SagaError as exc:
        print(f"{prog}: error: {shorten(str(exc))}", file=sys.stderr)
        code = EXIT_USAGE
    except MemoryError:
        print(f"{prog}: error: out of memory (try smaller settings)", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    except OSError as exc:
        print(f"{prog}: error: {shorten(describe_os_error(exc))}", file=sys.stderr)
        code = EXIT_USAGE
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
