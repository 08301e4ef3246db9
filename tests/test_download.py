"""grain-data download: resumable, checked downloads against a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

from saga_model.data import prepare_data
from saga_model.download import MANIFEST, download_dataset, download_file
from saga_model.errors import SagaError

PREFIX = "/datasets/roneneldan/TinyStories/resolve/main/"
TRAIN, VALID = "TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt"


class HubServer(ThreadingHTTPServer):
    """Serves files like the hub's resolve URLs, with Range support and injectable faults."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = {PREFIX + name: data for name, data in files.items()}
        self.requests: list[tuple[str, str | None]] = []  # (file name, Range header)
        self.cut: dict[str, int] = {}  # name -> responses still to cut off halfway
        self.ignore_range = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self, name: str) -> list[str | None]:
        return [r for n, r in self.requests if n == name]


class HubHandler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        name = self.path.removeprefix(PREFIX)
        self.server.requests.append((name, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and not self.server.ignore_range:
            start = int(wanted.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut.get(name, 0) > 0:
            self.server.cut[name] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def files() -> dict[str, bytes]:
    return {TRAIN: (FIXTURES / "stories" / "train.txt").read_bytes(),
            VALID: (FIXTURES / "stories" / "valid.txt").read_bytes()}


@pytest.fixture()
def hub(files: dict[str, bytes]) -> Iterator[HubServer]:
    server = HubServer(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fetch(hub: HubServer, dest: Path, **kwargs: object) -> list[Path]:
    return download_dataset("tinystories", "v2-cleaned", dest, base=hub.url, retry_wait=0,
                            **kwargs)  # type: ignore[arg-type]


def test_download_checks_records_and_is_ready_to_train(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    dest = tmp_path / "tinystories"
    paths = fetch(hub, dest)
    assert [p.name for p in paths] == [TRAIN, VALID]
    assert all(p.read_bytes() == files[p.name] for p in paths)
    assert not list(dest.glob("*.part"))
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["variant"] == "v2-cleaned"
    for name, data in files.items():
        record = manifest["files"][name]
        assert record["size"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["url"] == hub.url + PREFIX + name
    # A second run verifies against the manifest and downloads nothing.
    before = len(hub.requests)
    fetch(hub, dest)
    assert len(hub.requests) == before
    # The folder is a corpus: the valid file is the validation split.
    _, data = prepare_data(dest, tmp_path / "cache", vocab_size=600)
    assert (data.train.starts.size, data.valid.starts.size) == (150, 15)


def test_interrupted_transfer_resumes_with_a_range_request(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    hub.cut[TRAIN] = 1
    fetch(hub, tmp_path)
    half = len(files[TRAIN]) // 2
    assert hub.gets(TRAIN) == [None, f"bytes={half}-"]
    assert (tmp_path / TRAIN).read_bytes() == files[TRAIN]


def test_partial_file_of_an_earlier_run_is_resumed(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / f"{TRAIN}.part").write_bytes(files[TRAIN][:1000])
    fetch(hub, tmp_path)
    assert hub.gets(TRAIN) == ["bytes=1000-"]
    assert (tmp_path / TRAIN).read_bytes() == files[TRAIN]


def test_complete_partial_file_is_finished_without_data(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / f"{TRAIN}.part").write_bytes(files[TRAIN])  # crashed before the rename
    fetch(hub, tmp_path)
    assert (tmp_path / TRAIN).read_bytes() == files[TRAIN]


def test_server_ignoring_range_restarts_cleanly(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    hub.ignore_range = True
    (tmp_path / f"{TRAIN}.part").write_bytes(b"stale bytes that must not survive")
    fetch(hub, tmp_path)
    assert hub.gets(TRAIN) == ["bytes=33-"]
    assert (tmp_path / TRAIN).read_bytes() == files[TRAIN]


def test_damaged_file_is_downloaded_again(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    fetch(hub, tmp_path)
    damaged = bytearray(files[VALID])
    damaged[100] ^= 1  # same size, different bytes
    (tmp_path / VALID).write_bytes(bytes(damaged))
    messages: list[str] = []
    fetch(hub, tmp_path, log=messages.append)
    assert (tmp_path / VALID).read_bytes() == files[VALID]
    assert hub.gets(VALID) == [None, None]
    assert any("does not match" in m for m in messages)


def test_transfer_that_keeps_failing_leaves_a_part_to_resume(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    hub.cut[TRAIN] = 3
    target = tmp_path / TRAIN
    with pytest.raises(SagaError, match="run the command again to resume"):
        download_file(hub.url + PREFIX + TRAIN, target, retries=1, retry_wait=0)
    part = tmp_path / f"{TRAIN}.part"
    assert part.stat().st_size > 0 and not target.exists()
    download_file(hub.url + PREFIX + TRAIN, target, retries=1, retry_wait=0)
    assert target.read_bytes() == files[TRAIN]


def test_missing_file_and_offline_are_clear_errors(
        hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.files.clear()
    with pytest.raises(SagaError, match=r"not found on the server \(HTTP 404\)"):
        fetch(hub, tmp_path)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(SagaError, match=r"cannot reach 127\.0\.0\.1:\d+: .*offline"):
        download_dataset("tinystories", dest=tmp_path / "fresh", base=closed, retry_wait=0)
    assert not (tmp_path / "fresh").exists()  # no empty folder left behind

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.delenv("GRAIN_HF_BASE_URL", raising=False)
    with pytest.raises(SagaError, match=r"cannot reach huggingface\.co: Name or service not known"):
        download_dataset("tinystories", dest=tmp_path, retry_wait=0)
    with pytest.raises(SagaError, match="unknown dataset"):
        download_dataset("tinystories", "v9", dest=tmp_path)


def test_cli_uses_the_environment_base_url_and_fails_in_one_line(
        hub: HubServer, files: dict[str, bytes], tmp_path: Path) -> None:
    dest = tmp_path / "ts"
    ok = run_cli("-m", "saga_model.cli.data", "download", "tinystories", "--dest", str(dest),
                 "--quiet", env={"GRAIN_HF_BASE_URL": hub.url})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"ready: grain-train --data_dir {dest}"
    assert (dest / TRAIN).read_bytes() == files[TRAIN]
    hub.files.clear()
    failed = run_cli("-m", "saga_model.cli.data", "download", "tinystories", "--dest",
                     str(tmp_path / "other"), "--base_url", hub.url)
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("grain-data: error: not found on the server (HTTP 404)")
    usage = run_cli("-m", "saga_model.cli.data", "download", "nothing")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
