"""The story session: everything about telling a story that is not on screen (no Textual here).

Screens and inline mode only display what the session gives them. The session

- builds a :class:`StoryJob` from every source: the Story form or the command line
  (:func:`new_story`), a saved story told again, continued or branched (:func:`job_from_saved`),
  the story on screen continued (:func:`continuation`) or branched (:func:`branch`); every
  request goes through :func:`saga_model.story_request`, the builder ``grain-generate`` uses;
- keeps the loaded model, its decoder and the models' fingerprints (:class:`ModelCache`);
- streams a story piece by piece in a fresh thread, until done or cancelled
  (:meth:`StorySession.tell`, or :meth:`StorySession.start_telling` without waiting), timing
  the first token apart from the tokens after it;
- turns what was written into the story the library keeps (:func:`saved_story`).

A story is reproduced by the same model, request and sampling options (seed included), so a
saved story stores every field of :class:`saga_model.SamplingOptions`, the request and the
model's folder and fingerprint.

Why a fresh thread: MLX keeps streams per thread, and a thread must release its own
(:func:`saga_model.release_thread`) before the process ends, or the exit may abort with
"terminate called without an active exception" (ml-explore/mlx#3126). A thread cannot use MLX
again once it released them, and Textual's worker threads are pooled for the life of the app,
so model work runs in a short-lived thread of its own (:func:`run_in_fresh_thread`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import saga_model
from saga_model import SAMPLING_FIELDS, WEIGHTS_FILE, SagaError

from .library import SavedStory
from .models import ModelChoice, holds_model

if TYPE_CHECKING:
    from saga_model import SamplingOptions, StoryPiece, StoryRequest

    from .prefs import StorySettings

T = TypeVar("T")

MAX_SEED = 999_999  # random seeds stay short enough to read off the screen and type back
#: Values for options a story saved by an older version did not record: what was used then.
_BEFORE_RECORDED = {"name_boost": 0.0}
#: The fewest new tokens a continuation writes (about two sentences).
CONTINUE_TOKENS = 80
_VERSION_SUFFIX = re.compile(r" \((continued|new version)\)$")


# -- what to write -----------------------------------------------------------------------------

@dataclass
class StoryJob:
    """One story to write: what, how, with which model, and where it came from.

    ``parent_id`` is the library story this one grows from (continued or branched), and
    ``title`` the title to suggest when it is saved ("" to derive one from the text).
    """

    request: StoryRequest
    options: SamplingOptions
    model_path: Path
    model_label: str
    parent_id: int | None = None
    title: str = ""


def draw_seed() -> int:
    """A random seed, short enough to read off the screen and type back."""
    return random.randint(0, MAX_SEED)


def new_story(theme: str | None = None, tone: str | None = None, genre: str | None = None,
              characters: str | None = None, opening: str | None = None,
              seed: int | None = None,
              **sampling: float | int | None) -> tuple[StoryRequest, SamplingOptions]:
    """A new story's request and options, from the form or the command line; a random seed is
    drawn when none is given, so every story can be told again. Raises :class:`SagaError`."""
    return saga_model.story_request(theme, tone, genre, characters, opening,
                                    seed=draw_seed() if seed is None else seed, **sampling)


def story_from_settings(settings: StorySettings) -> tuple[StoryRequest, SamplingOptions]:
    """:func:`new_story` from the Story form's values."""
    return new_story(**dataclasses.asdict(settings))


def job_from_saved(story: SavedStory, model_path: Path, label: str, how: str = "again",
                   end: int | None = None) -> StoryJob:
    """A job for a library story: told ``again`` (its request, settings and seed: the same
    story), or a new version of it, ``continue`` from its end or ``branch`` after the sentence
    ending at ``end``. Raises :class:`SagaError` when its saved settings are not valid."""
    sampling = {**_BEFORE_RECORDED, **story.sampling}
    try:
        request, options = saga_model.story_request(
            story.theme, story.tone, story.genre, story.characters, story.opening,
            **{name: value for name, value in sampling.items() if name in SAMPLING_FIELDS})
    except SagaError as exc:
        raise SagaError(f"The story's saved settings are damaged: {exc}") from None
    if options.seed is None:  # saved before seeds were kept
        options = replace(options, seed=draw_seed())
    job = StoryJob(request, options, model_path, label, story.parent_id, story.title)
    if how == "continue":
        return continuation(job, story.text, story.id, story.title)
    if how == "branch":
        return branch(job, story.text, len(story.text) if end is None else end, story.id,
                      story.title)
    return job


def continuation(job: StoryJob, text: str, parent_id: int | None, title: str) -> StoryJob:
    """A new version that goes on from the end of ``text`` (written by ``job``): a new
    paragraph of at least :data:`CONTINUE_TOKENS` tokens (fewer only if the user's maximum is
    lower) — left to itself, the model closes a finished story at once."""
    version = _version(job, text.strip() + "\n", parent_id, title, "continued")
    least = min(CONTINUE_TOKENS, version.options.max_tokens)
    return replace(version, options=replace(version.options, min_tokens=least))


def branch(job: StoryJob, text: str, end: int, parent_id: int | None, title: str) -> StoryJob:
    """A new version that goes on from ``text`` up to ``end`` (the end of a sentence)."""
    return _version(job, text[:end].strip(), parent_id, title, "new version")


def _version(job: StoryJob, opening: str, parent_id: int | None, title: str,
             name: str) -> StoryJob:
    """A job writing on from ``opening`` with a new seed, linked to its parent story."""
    return replace(job, request=replace(job.request, opening=opening),
                   options=replace(job.options, seed=draw_seed()), parent_id=parent_id,
                   title=f"{_VERSION_SUFFIX.sub('', title)} ({name})")


def saved_story(job: StoryJob, text: str, title: str, model_id: str) -> SavedStory:
    """The story written by ``job`` as the library keeps it ("" for a choice left open)."""
    request, options = job.request, job.options
    return SavedStory(
        title=title, text=text, theme=request.theme or "", tone=request.tone or "",
        genre=request.genre or "", characters=", ".join(request.characters),
        opening=request.opening, model=job.model_label, sampling=dataclasses.asdict(options),
        parent_id=job.parent_id, seed=options.seed, model_path=str(job.model_path),
        model_id=model_id)


# -- models --------------------------------------------------------------------------------

def _weights(path: Path) -> Path:
    """The weights file of a model folder (or the file itself)."""
    return path / WEIGHTS_FILE if path.is_dir() else path


def model_fingerprint(path: Path) -> str:
    """A short id of a model's weights (SHA-256), the same wherever the folder is copied;
    ``""`` if the file cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(_weights(path), "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return ""
    return f"sha256:{digest.hexdigest()[:16]}"


class ModelCache:
    """Keeps the last loaded model and the fingerprints of models seen; safe to call from
    several threads (anything that touches MLX belongs in :func:`run_in_fresh_thread`).

    A model folder that changed on disk since it was loaded (a run's ``best/`` during training)
    is loaded again.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._key: tuple[str, int] | None = None
        self._loaded: tuple[Any, Any] | None = None
        self._decoder: tuple[Any, Any] | None = None  # (model, its decoder)
        self._fingerprints: dict[tuple[str, int], str] = {}

    @staticmethod
    def _key_for(path: Path) -> tuple[str, int]:
        try:
            stamp = _weights(path).stat().st_mtime_ns
        except OSError:
            stamp = 0
        return str(path), stamp

    def fingerprint(self, path: Path) -> str:
        """:func:`model_fingerprint` of ``path``, computed once per version of the file."""
        key = self._key_for(path)
        with self._lock:
            known = self._fingerprints.get(key)
        if known is None:
            known = model_fingerprint(path)
            with self._lock:
                self._fingerprints[key] = known
        return known

    def get(self, path: Path) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for ``path``; raises :class:`SagaError` if it cannot load."""
        key = self._key_for(path)
        with self._lock:
            if self._key != key or self._loaded is None:
                self._loaded = None
                try:
                    self._loaded = saga_model.load_model(path)
                except SagaError:
                    raise
                except Exception as exc:  # an unreadable file: permissions, I/O errors, ...
                    raise SagaError(f"cannot load the model in {path}: {exc}") from None
                self._key = key
            return self._loaded

    def decoder(self, path: Path) -> tuple[Any, Any]:
        """``(decoder, tokenizer)`` for ``path``: the loaded model's
        :func:`saga_model.make_decoder`, built once per model (it copies the weights: 5-8 ms a
        story on 2 cores otherwise). A decoder writes one story at a time. Raises
        :class:`SagaError` like :meth:`get`."""
        with self._lock:
            model, tokenizer = self.get(path)
            if self._decoder is None or self._decoder[0] is not model:
                self._decoder = (model, saga_model.make_decoder(model))
            return self._decoder[1], tokenizer


def start_fresh_thread(work: Callable[[], object]) -> threading.Thread:
    """Start ``work`` in a new thread that releases its MLX streams when done; return at
    once."""

    def target() -> None:
        try:
            work()
        finally:
            saga_model.release_thread()

    thread = threading.Thread(target=target, name="grain-model")
    thread.start()
    return thread


def run_in_fresh_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a new thread that releases its MLX streams when done; wait for it and
    return its result (or raise its error)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # handed to the calling thread below
            errors.append(exc)

    start_fresh_thread(target).join()
    if errors:
        raise errors[0]
    return results[0]


# -- writing -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoryUpdate:
    """A new piece of the story being written, with the figures so far.

    ``elapsed`` counts from the moment the model started on the story (reading the opening
    included); ``first_token`` is how long the first new token took (``None`` before it), so
    :attr:`writing_tokens_per_sec` leaves the opening out.
    """

    text: str
    n_tokens: int
    elapsed: float
    first_token: float | None
    finish_reason: str | None  # None while writing, then "end" or "length"
    model_id: str

    @property
    def tokens_per_sec(self) -> float:
        """New tokens per second, the opening's reading included (as ``grain-generate``)."""
        return self.n_tokens / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def writing_tokens_per_sec(self) -> float:
        """New tokens per second after the first one (reading the opening left out)."""
        if self.first_token is None or self.n_tokens < 2 or self.elapsed <= self.first_token:
            return self.tokens_per_sec
        return (self.n_tokens - 1) / (self.elapsed - self.first_token)


class _Timing:
    """Turns the model's pieces into updates, noting when the first new token came."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.first_token: float | None = None

    def update(self, piece: StoryPiece) -> StoryUpdate:
        if self.first_token is None and piece.n_tokens > 0:
            self.first_token = piece.elapsed
        return StoryUpdate(piece.text, piece.n_tokens, piece.elapsed, self.first_token,
                           piece.finish_reason, self.model_id)


class StorySession:
    """Loads models, picks the model for a saved story and writes stories, with no UI.

    :meth:`preload` and :meth:`tell` block (call them from a worker thread),
    :meth:`start_telling` does not; the model work itself runs in a fresh thread each time
    (see the module's docstring).
    """

    def __init__(self) -> None:
        self.models = ModelCache()
        self._writing = threading.Lock()  # one story at a time uses the decoder

    def preload(self, path: Path) -> str:
        """Load the model at ``path`` (and its decoder) so that the first story starts at once;
        returns its fingerprint. Raises :class:`SagaError` if it cannot be loaded."""
        run_in_fresh_thread(lambda: self._decoder(path))
        return self.models.fingerprint(path)

    def _decoder(self, path: Path) -> tuple[Any, Any]:
        """``(decoder, tokenizer)``; call it in a fresh thread."""
        try:
            return self.models.decoder(path)
        except SagaError as exc:
            raise SagaError(f"Could not load the model: {exc}") from None

    def model_for(self, story: SavedStory, choices: list[ModelChoice],
                  fallback: Path | None) -> tuple[Path | None, bool]:
        """The model to tell a saved story with, and whether it is the one that wrote it (its
        folder, or a model among ``choices`` with its fingerprint); else ``fallback``."""
        if story.model_path and holds_model(Path(story.model_path)):
            stored = Path(story.model_path)
            if not story.model_id or self.models.fingerprint(stored) == story.model_id:
                return stored, True
        if story.model_id:
            for choice in choices:
                if self.models.fingerprint(choice.path) == story.model_id:
                    return choice.path, True
        return fallback, False

    def tell(self, job: StoryJob, show: Callable[[StoryUpdate], None],
             cancelled: Callable[[], bool]) -> StoryUpdate | None:
        """Write ``job``'s story, handing each piece to ``show`` (from the model's thread) as
        soon as it is written; returns the last update, or ``None`` if ``cancelled()`` became
        true (nothing is shown after that). Raises :class:`SagaError` if the model cannot be
        loaded, the settings do not suit it, or writing fails in any other way (an error the
        screens could not show would leave them waiting forever)."""
        return run_in_fresh_thread(lambda: self._tell(job, show, cancelled))

    def start_telling(self, job: StoryJob, show: Callable[[StoryUpdate], None],
                      cancelled: Callable[[], bool], failed: Callable[[str], None]) -> None:
        """:meth:`tell` without waiting for the story: the model's thread is started before
        this returns (from a Textual worker, that took 3-10 ms more: a task, then a pooled
        thread, then the model's), and an error goes to ``failed`` (its message) instead of
        being raised."""

        def work() -> None:
            try:
                self._tell(job, show, cancelled)
            except SagaError as exc:
                failed(str(exc))

        start_fresh_thread(work)

    def _tell(self, job: StoryJob, show: Callable[[StoryUpdate], None],
              cancelled: Callable[[], bool]) -> StoryUpdate | None:
        try:
            with self._writing:  # a story cancelled just before stops at its next piece
                decoder, tokenizer = self._decoder(job.model_path)
                timing = _Timing(self.models.fingerprint(job.model_path))
                last = None
                for piece in saga_model.stream_story(decoder, tokenizer, job.request,
                                                     job.options):
                    if cancelled():
                        return None
                    last = timing.update(piece)
                    show(last)
                return last
        except SagaError:
            raise
        except Exception as exc:
            raise SagaError(f"The story could not be written: {type(exc).__name__}: "
                            f"{exc}") from None

