"""Running model work in threads that MLX can clean up after.

MLX keeps streams per thread, and a thread must release its own
(:func:`saga_model.release_thread`) before the process ends, or the exit may abort with
"terminate called without an active exception" (ml-explore/mlx#3126; reproduced here about
one run in three). A thread cannot use MLX again once it released them, and Textual's worker
threads are pooled for the life of the app, so model work runs in a short-lived thread of its
own that releases its streams when done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import saga_model

T = TypeVar("T")


def run_in_fresh_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a new thread, wait for it and return its result (or raise its error)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the calling thread below
            errors.append(exc)
        finally:
            saga_model.release_thread()

    thread = threading.Thread(target=target, name="grain-model")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
