"""Reading stories aloud with the system's speech engine: ``say`` (macOS) or ``espeak-ng``.

Text is cut into sentences (:class:`SentenceSplitter` also works on a story that is still
streaming in) and a :class:`Speaker` speaks them one after another in a background thread,
one engine process per sentence, so :meth:`Speaker.stop` ends the current sentence at once
(the process is terminated) and drops the rest. The text goes to the engine on its standard
input, never on its command line. :func:`export_audio` writes a whole story to a sound file
(``say -o story.aiff`` / ``espeak-ng -w story.wav``).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Engines in the order they are looked for on ``PATH``.
ENGINES = ("say", "espeak-ng")
NO_ENGINE = ("Reading aloud needs a speech engine, and none was found: macOS has `say`; on "
             "Linux install espeak-ng (e.g. `sudo apt install espeak-ng`).")
#: A sentence ends with . ! ? or … (then closing quotes or brackets) before a space, or at a
#: line break; not inside a quotation, nor before a lowercase word ("Wait!" said Milo).
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")


@dataclass(frozen=True)
class SpeechEngine:
    """A speech program found on ``PATH``."""

    name: str
    path: str

    @property
    def audio_suffix(self) -> str:
        """The sound file type the engine writes."""
        return ".aiff" if self.name == "say" else ".wav"

    def command(self, voice: str, rate: int, output: Path | None = None) -> list[str]:
        """The command that speaks its standard input (into ``output`` if given)."""
        if self.name == "say":
            return [self.path, *(["-v", voice] if voice else []), "-r", str(rate),
                    *(["-o", str(output)] if output else []), "-f", "-"]
        return [self.path, *(["-v", voice] if voice else []), "-s", str(rate),
                *(["-w", str(output)] if output else []), "--stdin"]


def find_engine() -> SpeechEngine | None:
    """The first speech engine on ``PATH`` (``say``, then ``espeak-ng``), if any."""
    for name in ENGINES:
        path = shutil.which(name)
        if path:
            return SpeechEngine(name, path)
    return None


def sentence_spans(text: str, final: bool = True) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``. Without ``final`` the text may still
    grow, so its unfinished last sentence is left out."""
    spans = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group() != "\n":  # a line break always ends a sentence
            if _inside_quotation(text[start : match.end()]):
                continue  # "Let us go. It is late!" is one sentence
            after = text[match.end() :].lstrip(" \t")
            if not after and not final:
                break  # the next word decides, and it has not come yet
            if after[:1].islower():
                continue  # "Wait!" said Milo.
        if text[start : match.end()].strip():
            spans.append((start, match.end()))
        start = match.end()
    if final and text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _inside_quotation(text: str) -> bool:
    """Whether a quotation opened in ``text`` is still open at its end."""
    return text.count('"') % 2 == 1 or text.count("“") > text.count("”")


def split_sentences(text: str) -> list[str]:
    """The sentences of a whole text."""
    return [text[start:end].strip() for start, end in sentence_spans(text)]


class SentenceSplitter:
    """Cuts streaming text into sentences as soon as each one is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """Add text; returns the sentences it completed."""
        self._buffer += text
        spans = sentence_spans(self._buffer, final=False)
        if not spans:
            return []
        done = [self._buffer[start:end].strip() for start, end in spans]
        self._buffer = self._buffer[spans[-1][1] :]
        return done

    def flush(self) -> list[str]:
        """The text is complete: its last sentence, if it had no full stop."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []


class Speaker:
    """Speaks sentences in order in a background thread; :meth:`stop` silences it at once.

    ``on_error`` is called (from that thread) with a message when the engine fails; what was
    still queued is then dropped.
    """

    def __init__(self, engine: SpeechEngine, voice: str, rate: int,
                 on_error: Callable[[str], None]) -> None:
        self.engine = engine
        self.voice = voice
        self.rate = rate
        self._on_error = on_error
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by stop(): sentences queued before it are skipped
        self._pending = 0  # sentences queued or being spoken
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    @property
    def speaking(self) -> bool:
        """Whether a sentence is being spoken or waits to be."""
        return self._pending > 0

    def say(self, sentence: str) -> None:
        """Queue a sentence (spoken after the ones before it)."""
        with self._lock:
            self._pending += 1
            epoch = self._epoch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="grain-speech",
                                                daemon=True)
                self._thread.start()
        self._queue.put((epoch, sentence))

    def stop(self) -> None:
        """Stop speaking now: end the current sentence and forget the queued ones."""
        with self._lock:
            self._epoch += 1
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._pending -= 1
            if self._process is not None:
                self._process.terminate()

    def close(self) -> None:
        """Stop and end the background thread."""
        self.stop()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            epoch, sentence = item
            try:
                error = self._speak(epoch, sentence)
            finally:
                with self._lock:
                    self._pending -= 1
            if error:
                self.stop()
                self._on_error(error)

    def _speak(self, epoch: int, sentence: str) -> str | None:
        """Speak one sentence unless stopped meanwhile; an error message if the engine failed."""
        with self._lock:
            if epoch != self._epoch:
                return None
            try:
                process = subprocess.Popen(self.engine.command(self.voice, self.rate),
                                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
            except OSError as exc:
                return f"Could not start {self.engine.name}: {exc}"
            self._process = process
        _, err = process.communicate(sentence.encode("utf-8"))
        with self._lock:
            self._process = None
            stopped = epoch != self._epoch
        if process.returncode and not stopped:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            return f"{self.engine.name} failed: {detail[-1] if detail else process.returncode}"
        return None


def export_audio(engine: SpeechEngine, text: str, target: Path, voice: str, rate: int,
                 timeout: float = 900) -> None:
    """Speak ``text`` into the sound file ``target`` (written whole or not at all); raises
    :class:`OSError` with the engine's message if it fails."""
    temporary = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        result = subprocess.run(engine.command(voice, rate, temporary),
                                input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=timeout, check=False)
        if result.returncode or not temporary.is_file():
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OSError(f"{engine.name} failed: "
                          f"{detail[-1] if detail else f'exit code {result.returncode}'}")
        os.replace(temporary, target)
    except subprocess.TimeoutExpired:
        raise OSError(f"{engine.name} took longer than {timeout:.0f} s") from None
    finally:
        temporary.unlink(missing_ok=True)
