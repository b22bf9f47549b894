"""Hostile HTTP clients against the exporter's own web server: an endless body before any
credentials, requests that make a handler fail, and user names guessed by timing."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from exporter.app import App
from tests.conftest import ENV, write_config
from tests.helpers import assert_promtool_accepts, http
from tests.servers.scripted import refused_port
from tests.test_cli import Daemon, port_from_log

PASSWORD = "scrape-pass-5521"
CHEAP = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
# What the attacker streams: without the fix the server holds all of it (and more, while it
# joins the pieces); with it, the server never reads more than its 64 KiB drain.
STREAM = 128 * 1024 * 1024
# Sockets, threads and a /metrics scrape cost a few MB; reading the stream would cost >128 MB.
RSS_GROWTH_BOUND = 24 * 1024 * 1024


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, str]], Awaitable[str]]]:
    """Starts an App under basic auth with these users (name -> bcrypt hash); yields its URL."""
    apps: list[App] = []

    async def start(users: dict[str, str]) -> str:
        cfg = write_config(tmp_path / "config.yaml",
                           {"name": "a", "port": refused_port(), "tls": "none", "interval": "1h"})
        web = tmp_path / "web.yml"
        web.write_text(json.dumps({"basic_auth_users": users}))
        app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV, web_config=str(web))
        await app.start()
        apps.append(app)
        assert app.web is not None
        return f"http://127.0.0.1:{app.web.port}"

    yield start
    for app in apps:
        await app.stop()


def endless_body(port: int) -> tuple[bytes, float, int]:
    """POSTs /-/reload without credentials and ``Content-Length: -1``, then streams up to
    STREAM bytes; returns the answer's head, the seconds until it came, the bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0

    def pump() -> None:
        nonlocal sent
        chunk = b"A" * 65536
        deadline = time.monotonic() + 20
        try:
            while sent < STREAM and time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed the connection: what it should do

    start = time.monotonic()
    sock.sendall(f"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Content-Length: -1\r\n\r\n".encode())
    sender = threading.Thread(target=pump, name="test-pump")
    sender.start()
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    except OSError:
        pass
    answered = time.monotonic() - start
    sender.join(30)
    sock.close()
    return head, answered, sent


async def test_endless_body_before_credentials_is_never_read(guarded: Any) -> None:
    """A POST without credentials and Content-Length: -1 streaming 128 MB gets 401 at once,
    the exporter's memory stays flat, and /metrics answers within 1 s throughout."""
    base = await guarded({"ops": CHEAP})
    port = int(base.rsplit(":", 1)[1])
    gc.collect()
    baseline = peak = rss()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, name="test-rss")
    watcher.start()
    try:
        attack = asyncio.create_task(asyncio.to_thread(endless_body, port))
        scrapes = []
        for _ in range(3):
            t0 = time.monotonic()
            status, text, _ = await asyncio.to_thread(http, base + "/metrics",
                                                      headers=basic("ops", PASSWORD))
            scrapes.append(time.monotonic() - t0)
            assert status == 200
            await asyncio.sleep(0.05)
        head, answered, sent = await attack
    finally:
        done.set()
        watcher.join()
    growth = peak - baseline
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"WWW-Authenticate: Basic" in head
    assert answered < 1.0, f"401 after {answered:.2f} s"
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.0f} MiB ({sent} bytes sent)"
    assert max(scrapes) < 1.0, scrapes
    assert_promtool_accepts(text)
    # the server stopped the upload rather than swallowing it
    assert sent < STREAM, f"the server took all {sent} bytes"


def wrong_login(url: str, user: str, password: str) -> float:
    t0 = time.perf_counter()
    status, _, _ = http(url, headers=basic(user, password))
    assert status == 401
    return time.perf_counter() - t0


async def test_unknown_user_takes_as_long_as_a_wrong_password(guarded: Any) -> None:
    """With users hashed at bcrypt cost 12, a wrong password for a real user and any password
    for an unknown one take the same time, so timing does not tell which users exist."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    base = await guarded({"alice": hashed})
    wrong: list[float] = []
    unknown: list[float] = []
    for i in range(3):  # each attempt new, so no cached result answers it
        wrong.append(await asyncio.to_thread(wrong_login, base + "/metrics", "alice",
                                             f"guess-{i}"))
        unknown.append(await asyncio.to_thread(wrong_login, base + "/metrics", f"nobody{i}",
                                               f"guess-{i}"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    # Both are now one bcrypt check at cost 12 (~250 ms here), so the ratio is ~1: scheduling
    # and HTTP add a few ms. A decoy at another cost is 4x off per step (cost 10: ~0.25), far
    # outside 0.5-2, the band inside which a few attempts cannot tell the two apart.
    assert 0.5 < ratio < 2.0, (f"unknown user {statistics.median(unknown) * 1000:.0f} ms, "
                               f"wrong password {statistics.median(wrong) * 1000:.0f} ms")


def raw(port: int, request: bytes) -> bytes:
    """Sends ``request`` as is and returns everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while data := sock.recv(65536):
            reply += data
    return reply


def reset_mid_request(port: int) -> None:
    """A client that sends a request and aborts the connection (RST) before the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_handler_failures_are_one_json_line_each(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """With --log.format json, a malformed Content-Length, a header that makes the handler
    fail and clients that reset mid-request leave only JSON lines on stderr, no traceback,
    the attacker's escape sequences shown escaped; the handler failure answers 500."""
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": refused_port(),
                                             "tls": "none", "interval": "1h"})
    d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0",
                "--log.format", "json", "--log.level", "debug"], tmp_path / "log")
    daemons.append(d)
    port = port_from_log(d)
    reply = raw(port, b"POST /-/reload HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 12\x1b[31mEVIL\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    # prometheus_client (0.26) compares "0-x" with 0 in this version and raises TypeError
    reply = raw(port, b"GET /metrics?\x1b[31mPATH HTTP/1.1\r\nHost: x\r\n"
                      b"Accept: application/openmetrics-text; version=1.0.0-x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500 "), reply
    assert b"Traceback" not in reply and b"TypeError" not in reply
    for _ in range(5):
        reset_mid_request(port)
    status, text, _ = http(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    assert status == 200 and "smtp_probe_success" in text
    assert d.stop() < 5
    log = d.text()
    records = []
    for line in log.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert "Traceback" not in log and "\x1b" not in log
    failed = [r for r in records if r["msg"] == "HTTP request failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error", failed
    assert "\\x1b[31mPATH" in failed[0]["request"]
    assert "TypeError" in failed[0]["error"]
    assert any("12\\x1b[31mEVIL" in str(r.get("content_length")) for r in records), records
