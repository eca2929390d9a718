"""The server against slow, cut-off and vanishing clients: `searchengine serve` as a subprocess, raw sockets.

What these guard lives in the HTTP layer (uvicorn's protocol, the server log), so they go over real TCP;
the decode bound is checked in-process, where a search can be held inside the library.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from media_factory import make_image, tone, write_wav
from searchengine.errors import ArgumentError
from searchengine import open_index
from searchengine.server.app import create_app
from searchengine.server.limits import Limits

REPO = Path(__file__).resolve().parents[1]
TOKEN = "robust-secret-42"
READ_TIMEOUT = 1.0  # the server's --read-timeout here: short, so stalled clients are dropped quickly
MAX_UPLOADS = 4


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_bundle) -> dict:
    """An index over a small image, a recording and a 3 MB photo (big enough to be cut off mid-response)."""
    root = tmp_path_factory.mktemp("robust_media")
    make_image(root / "a.png", 1)
    write_wav(root / "v.wav", tone(1, 1.0))
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "big.png")
    index = tmp_path_factory.mktemp("robust_index") / "index"
    with open_index(index, tiny_bundle) as idx:
        assert idx.index([root]).added == 3
    return {"root": root, "index": index}


class Server:
    """A running `searchengine serve` and its combined stdout/stderr log."""

    def __init__(self, index: Path, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log
        cmd = [sys.executable, "-m", "searchengine", "serve", "--index", str(index), "--port", str(self.port),
               "--token", TOKEN, "--device", "cpu", "--read-timeout", str(READ_TIMEOUT),
               "--max-uploads", str(MAX_UPLOADS), "--max-searches", "2"]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()}"
            try:
                if self.request(b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + BEARER + b"\r\n")[0] == 200:
                    return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"server did not answer within {timeout} s:\n{self.log.read_text()}")

    def connect(self, timeout: float = 10) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def request(self, raw: bytes) -> tuple[int, dict | bytes, bool]:
        with self.connect() as sock:
            sock.sendall(raw)
            return read_response(sock)

    def log_since(self, offset: int) -> str:
        return self.log.read_text()[offset:]


BEARER = f"Authorization: Bearer {TOKEN}\r\n".encode()


@pytest.fixture(scope="module")
def server(library, tmp_path_factory):
    srv = Server(library["index"], tmp_path_factory.mktemp("robust_log") / "server.log")
    try:
        srv.wait_until_up()
        yield srv
    finally:
        srv.proc.terminate()
        srv.proc.wait(timeout=30)


def search_head(length: int | None, boundary: str = "b") -> bytes:
    """Request line and headers of a multipart search declaring `length` body bytes."""
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"{size}").encode() + BEARER + b"\r\n"


def form(field: str, data: bytes, close: bool = True) -> bytes:
    """A multipart body with one part (a file for audio/image), with or without the closing boundary."""
    name = f'name="{field}"' + ("" if field == "text" else '; filename="q"')
    return (f"--b\r\nContent-Disposition: form-data; {name}\r\n\r\n").encode() + data + b"\r\n" \
        + (b"--b--\r\n" if close else b"")


def read_response(sock: socket.socket) -> tuple[int, dict | bytes, bool]:
    """(status, JSON body or raw bytes, whether the server then closed the connection) of one response."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed without a complete response: {data!r}")
        data += piece
    head, body = data.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
    while len(body) < int(headers.get("content-length", 0)):
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    closed = headers.get("connection") == "close" and sock.recv(1) == b""
    is_json = headers.get("content-type", "").startswith("application/json")
    return int(head.split(b" ")[1]), json.loads(body) if is_json else body, closed


def reset(sock: socket.socket) -> None:
    """Vanish abruptly: close with a TCP reset, as a killed browser tab or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------------ slow clients

def test_stalled_uploads_get_408_and_the_overflow_503(server):
    """Clients that send headers and a few body bytes, then stall, are answered and dropped: those admitted
    after the read timeout with 408, those beyond --max-uploads at once with 503 (not queued)."""
    socks, answers, lock = [], [], threading.Lock()
    start = time.monotonic()

    def stall_and_wait(sock):
        status, body, closed = read_response(sock)
        with lock:
            answers.append((status, body, closed, time.monotonic() - start))

    for _ in range(MAX_UPLOADS + 6):
        sock = server.connect(timeout=15)
        sock.sendall(search_head(100_000) + b"--b\r\nContent-Dispo")
        socks.append(sock)
    threads = [threading.Thread(target=stall_and_wait, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for s in socks:
        s.close()
    assert sorted(a[0] for a in answers) == [408] * MAX_UPLOADS + [503] * 6
    for status, body, closed, when in answers:
        assert isinstance(body, dict) and body["error"]
        if status == 408:  # after the timeout, not before, and the connection is gone
            assert "timed out" in body["error"] and closed and READ_TIMEOUT * 0.9 < when < READ_TIMEOUT + 5
        else:
            assert "busy" in body["error"]
    # the refused ones were answered at once, not queued behind the stalled ones
    assert max(a[3] for a in answers if a[0] == 503) < min(a[3] for a in answers if a[0] == 408)
    # the slots are free again
    ok = server.request(search_head(len(form("text", b"dog"))) + form("text", b"dog"))
    assert ok[0] == 200 and ok[1]["hits"]


@pytest.mark.parametrize("sent", [b"", b"GET /api/sta", b"POST /api/search HTTP/1.1\r\nHost: x\r\n"])
def test_incomplete_request_headers_are_dropped(server, sent):
    """A connection that never completes its request line and headers is closed after the read timeout."""
    start = time.monotonic()
    with server.connect(timeout=READ_TIMEOUT + 10) as sock:
        sock.sendall(sent)
        assert sock.recv(100) == b""
    assert READ_TIMEOUT * 0.9 < time.monotonic() - start < READ_TIMEOUT + 5


# ------------------------------------------------------------------ cut-off bodies

def test_half_closed_short_body_is_400(server):
    """Content-Length promises more than comes, then the client half-closes: a JSON 400, not silence."""
    body = form("text", b"dog")
    with server.connect() as sock:
        sock.sendall(search_head(len(body) + 500) + body[:30])
        sock.shutdown(socket.SHUT_WR)
        status, answer, _ = read_response(sock)
    assert status == 400 and f"ended after 30 of the {len(body) + 500} bytes" in answer["error"]


def test_half_close_after_a_complete_request_still_gets_the_answer(server):
    body = form("text", b"dog")
    with server.connect() as sock:
        sock.sendall(search_head(len(body)) + body)
        sock.shutdown(socket.SHUT_WR)
        status, answer, _ = read_response(sock)
    assert status == 200 and answer["hits"]


@pytest.mark.parametrize("field,data", [("text", b"dog"), ("image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 500)])
def test_missing_closing_boundary_is_malformed(server, field, data):
    body = form(field, data, close=False)
    status, answer, _ = server.request(search_head(len(body)) + body)
    assert status == 400 and answer["error"].startswith("malformed form data") and "closing boundary" in answer["error"]


# ------------------------------------------------------------------ clients that vanish, and the log

def test_clients_that_vanish_leave_no_traceback(server, library):
    """Mid-upload, mid-search and mid-download disconnects: each at most one short line in the log."""
    offset = len(server.log.read_text())
    upload = form("image", (library["root"] / "big.png").read_bytes())
    media_id = _id_of(server, "big.png")

    def mid_upload(vanish):
        sock = server.connect()
        sock.sendall(search_head(len(upload)) + upload[:200_000])
        time.sleep(0.1)
        vanish(sock)

    def mid_search(vanish):
        sock = server.connect()
        sock.sendall(search_head(len(upload)) + upload)
        time.sleep(0.05)
        vanish(sock)

    def mid_download(vanish):
        sock = server.connect()
        sock.sendall(f"GET /api/media/{media_id} HTTP/1.1\r\nHost: x\r\n".encode() + BEARER + b"\r\n")
        sock.recv(1000)
        vanish(sock)

    jobs = [threading.Thread(target=job, args=(vanish,)) for _ in range(3)
            for job in (mid_upload, mid_search, mid_download) for vanish in (reset, socket.socket.close)]
    for t in jobs:
        t.start()
    for t in jobs:
        t.join(30)
    time.sleep(1.0)  # let the server notice every departure
    assert server.request(b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + BEARER + b"\r\n")[0] == 200
    log = server.log_since(offset)
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "went away during POST /api/search" in log  # the resets during uploads, one line each


def _id_of(server, name: str) -> int:
    body = form("text", b"photo")
    status, answer, _ = server.request(search_head(len(body)) + body)
    assert status == 200
    return next(h["id"] for h in answer["hits"] if h["path"].endswith(name))


def test_token_in_the_url_is_not_logged(server):
    offset = len(server.log.read_text())
    for path in (f"/api/status?token={TOKEN}", f"/?token={TOKEN}", f"/api/status?k=1&token={TOKEN}&x=2"):
        status, _, _ = server.request(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == 200
    time.sleep(0.3)
    log = server.log_since(offset)
    assert TOKEN not in server.log.read_text()
    assert log.count("token=***") == 3 and "GET /api/status?k=1&token=***&x=2" in log


# ------------------------------------------------------------------ decode bound (in-process)

@pytest.fixture
def index(library):
    with open_index(library["index"]) as idx:
        yield idx


def test_at_most_max_searches_decode_at_once(index, monkeypatch):
    """Eight parallel searches with max_searches=2: all answered, never more than two inside Index.search."""
    inside, most, lock, real = [0], [0], threading.Lock(), index.search

    def search(**kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.15)
            return real(**kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(index, "search", search)
    with TestClient(create_app(index, limits=Limits(max_searches=2))) as client:
        answers: list = []
        threads = [threading.Thread(target=lambda: answers.append(client.post("/api/search", data={"text": "x"})))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [r.status_code for r in answers] == [200] * 8
    assert most[0] == 2


def test_a_search_waiting_too_long_for_a_slot_is_503(index, monkeypatch):
    entered, release, real = threading.Event(), threading.Event(), index.search

    def held_search(**kwargs):
        entered.set()
        release.wait(30)
        return real(**kwargs)

    monkeypatch.setattr(index, "search", held_search)
    with TestClient(create_app(index, limits=Limits(max_searches=1, search_wait=0.3))) as client:
        first: list = []
        worker = threading.Thread(target=lambda: first.append(client.post("/api/search", data={"text": "x"})))
        worker.start()
        try:
            assert entered.wait(10)
            r = client.post("/api/search", data={"text": "y"})
            assert r.status_code == 503 and "busy" in r.json()["error"] and r.headers["retry-after"]
        finally:
            release.set()
            worker.join(30)
    assert first[0].status_code == 200


def test_limits_reject_nonsense():
    with pytest.raises(ArgumentError):
        Limits(max_searches=0)
    with pytest.raises(ArgumentError):
        Limits(body_timeout=0)
