"""Downloading story datasets (TinyStories) from the Hugging Face hub, standard library only.

Each file is fetched over HTTPS into ``<name>.part``; an interrupted transfer resumes with an
HTTP ``Range`` request (a server that ignores it is read again from the start), the size is
checked against ``Content-Length``, the file is fsynced and renamed into place.  The size and
SHA-256 of every finished file go into a manifest next to the files, against which later runs
verify them instead of downloading again.  The hub does not publish checksums that could be
checked here, so the manifest records what was received.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text, fsync_dir
from .config import read_json
from .errors import SagaError

DEFAULT_BASE_URL = "https://huggingface.co"
#: Environment variable naming another hub (a mirror, or a local server in tests).
BASE_URL_ENV = "GRAIN_HF_BASE_URL"
#: File written next to the downloaded files: what was downloaded, with sizes and SHA-256.
MANIFEST = "grain-download.json"
_BLOCK = 1 << 20

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Dataset:
    """Files of a dataset repository on the hub."""

    repo: str
    files: tuple[str, ...]
    description: str


_TINYSTORIES_V2 = ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt")

#: Known datasets and their variants.  ``v2-cleaned`` is TinyStories V2 (the GPT-4 stories) as
#: Grain de Saga trains on it: the same files as ``v2``, which preparation cleans (mojibake,
#: Unicode NFC, plain quotes, whitespace, control-token literals) and de-duplicates.
DATASETS: dict[str, dict[str, Dataset]] = {
    "tinystories": {
        "v2-cleaned": Dataset("roneneldan/TinyStories", _TINYSTORIES_V2,
                              "TinyStories V2 (GPT-4 stories), cleaned and de-duplicated "
                              "while preparing"),
        "v2": Dataset("roneneldan/TinyStories", _TINYSTORIES_V2,
                      "TinyStories V2 (GPT-4 stories) as published"),
    },
}
DEFAULT_VARIANT = "v2-cleaned"


def base_url(override: str | None = None) -> str:
    """The hub to download from: ``override``, else ``$GRAIN_HF_BASE_URL``, else the hub."""
    url = override or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what rejects "http://host:x"
    except ValueError as exc:
        raise SagaError(f"base URL {url!r} is not a valid address: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SagaError(f"base URL must start with https:// or http:// and name a host, "
                        f"got {url!r}")
    return url.rstrip("/")


def file_url(base: str, repo: str, name: str) -> str:
    """Address of one file of a dataset repository (``.../datasets/<repo>/resolve/main/...``)."""
    return f"{base}/datasets/{repo}/resolve/main/{urllib.parse.quote(name)}"


class _Interrupted(Exception):
    """The connection ended before the whole file arrived."""


def _sha256(path: Path, label: str, progress: ProgressFn | None) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK * 4):
            h.update(block)
            done += len(block)
            if progress:
                progress(label, done, size)
    return h.hexdigest()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where unknown."""
    match = re.fullmatch(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _offline_error(url: str, reason: object) -> SagaError:
    host = urllib.parse.urlsplit(url).netloc
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return SagaError(f"cannot reach {host}: {text} (offline? a mirror can be set with "
                     f"--base_url or {BASE_URL_ENV})")


def _check_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise SagaError(f"not enough disk space in {directory}: {needed / 1e9:.2f} GB "
                        f"needed, {free / 1e9:.2f} GB free")


def _reject_web_page(url: str, content_type: str | None, start: bytes) -> None:
    """A web page where a data file was expected: a Wi-Fi login page (captive portal), a proxy's
    error page or a wrong mirror answering 200 must not become the dataset."""
    head = start[:512].lstrip().lower()
    if (content_type or "").lower().startswith("text/html") or head.startswith(
            (b"<!doctype html", b"<html")):
        host = urllib.parse.urlsplit(url).netloc
        raise SagaError(f"{host} sent a web page instead of the file {url.rsplit('/', 1)[-1]} "
                        "(a Wi-Fi login page or proxy? open any website in a browser first, "
                        f"or set --base_url or {BASE_URL_ENV})")


def _transfer(url: str, part: Path, label: str, progress: ProgressFn | None,
              timeout: float) -> None:
    """One attempt: fetch ``url`` into ``part``, continuing what it already holds."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "grain-de-saga", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # nothing left to send: the part is whole, or not ours
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == have:
                return
            part.unlink()
            raise _Interrupted("the partial file did not match; starting again") from None
        if exc.code == 404:
            raise SagaError(f"not found on the server (HTTP 404): {url}") from None
        if exc.code >= 500 or exc.code == 429:  # the server's trouble: try again later
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise SagaError(f"HTTP {exc.code} {exc.reason}: {url}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Interrupted("timed out") from None
        raise _offline_error(url, exc.reason) from None
    with response:
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != have:
                part.unlink()
                raise _Interrupted("the server sent the wrong part; starting again")
        else:  # 200: a fresh start, or a server that ignores Range
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None:
            _check_space(part.parent, total - have)
        block = response.read(_BLOCK)
        _reject_web_page(url, response.headers.get("Content-Type"), block if not have else b"")
        with open(part, "ab" if have else "wb") as handle:
            while block:
                handle.write(block)
                have += len(block)
                if progress:
                    progress(label, have, total or 0)
                block = response.read(_BLOCK)
            handle.flush()
            os.fsync(handle.fileno())
    if total is not None and have != total:
        raise _Interrupted(f"connection closed after {have} of {total} bytes")


def download_file(url: str, target: Path, *, progress: ProgressFn | None = None,
                  retries: int = 4, retry_wait: float = 2.0, timeout: float = 60.0,
                  before_rename: Callable[[int, str], None] | None = None) -> str:
    """Download ``url`` to ``target`` through ``target.part``, resuming interrupted transfers
    (up to ``retries`` times in this call; a later call resumes what is left).

    Returns the file's SHA-256, which is also given with its size to ``before_rename``
    (to record it before the file appears under its final name).
    """
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, target.name, progress, timeout)
            break
        except (_Interrupted, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            if attempt == retries:
                reason = str(exc) or type(exc).__name__
                raise SagaError(f"download of {target.name} failed ({reason}); run the command "
                                "again to resume") from None
            time.sleep(retry_wait * 2**attempt)
    digest = _sha256(part, f"checksum of {target.name}", progress)
    if before_rename:
        before_rename(part.stat().st_size, digest)
    os.replace(part, target)
    fsync_dir(target.parent)
    return digest


def _read_manifest(dest: Path) -> dict[str, Any]:
    path = dest / MANIFEST
    if not path.is_file():
        return {"files": {}}
    manifest = read_json(path, "download manifest")
    if not isinstance(manifest.get("files"), dict):
        raise SagaError(f"{path} is not a download manifest: delete it and download again")
    return manifest


def _verified(path: Path, record: dict[str, Any] | None, progress: ProgressFn | None) -> bool:
    """The file exists and matches its manifest record (size, then SHA-256)."""
    if record is None or not path.is_file() or path.stat().st_size != record.get("size"):
        return False
    return _sha256(path, f"verifying {path.name}", progress) == record.get("sha256")


def download_dataset(
    name: str,
    variant: str = DEFAULT_VARIANT,
    dest: str | Path = ".",
    *,
    base: str | None = None,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
    retries: int = 4,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> list[Path]:
    """Download every file of a dataset variant into ``dest``; returns their paths.

    Files already there and matching the manifest are kept; others are downloaded (resuming
    a ``.part`` file left by an interrupted run).  ``base`` overrides the hub's address.
    """
    try:
        dataset = DATASETS[name][variant]
    except KeyError:
        choices = ", ".join(f"{n} ({', '.join(v)})" for n, v in DATASETS.items())
        raise SagaError(f"unknown dataset {name!r} or variant {variant!r}; "
                        f"available: {choices}") from None
    hub = base_url(base)
    directory = Path(dest)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SagaError(f"cannot create {directory}: {exc.strerror}") from None
    try:
        manifest = _read_manifest(directory)
        paths = []
        for file in dataset.files:
            target = directory / file
            paths.append(target)
            record = manifest["files"].get(file)
            if _verified(target, record, progress):
                if log:
                    log(f"{file}: already downloaded and verified")
                continue
            if target.exists():
                if log:
                    log(f"{file}: does not match {MANIFEST}; downloading it again")
                target.unlink()
            url = file_url(hub, dataset.repo, file)

            def record(size: int, digest: str, file: str = file, url: str = url) -> None:
                manifest["files"][file] = {"url": url, "size": size, "sha256": digest}
                manifest.update(dataset=name, variant=variant, repo=dataset.repo)
                atomic_write_text(directory / MANIFEST,
                                  json.dumps(manifest, indent=2, sort_keys=True) + "\n")

            digest = download_file(url, target, progress=progress, retries=retries,
                                   retry_wait=retry_wait, timeout=timeout, before_rename=record)
            if log:
                log(f"{file}: {target.stat().st_size / 1e6:,.1f} MB, sha256 {digest[:16]}...")
    except BaseException:
        if created and not any(directory.iterdir()):
            directory.rmdir()  # nothing arrived (e.g. offline): leave no empty folder behind
        raise
    return paths
