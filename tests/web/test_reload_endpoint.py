"""/-/reload as a browser and a careless client see it: POST only, a small body with a valid
Content-Length or none, and no reload from another site's page."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from exporter.app import App
from exporter.web.guard import cross_site
from tests.conftest import ENV, write_config
from tests.helpers import http, value
from tests.servers.scripted import refused_port

Reply = tuple[int, str, dict[str, str]]
PASSWORD = "reload-pass-4417"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
BASIC = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()


def request(port: int, method: str, path: str, headers: dict[str, str],
            body: bytes = b"") -> Reply:
    """One request with exactly these headers (http.client adds Host unless given)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers,
                        skip_accept_encoding=True)
        for key, val in headers.items():
            conn.putheader(key, val)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.getheaders())
    finally:
        conn.close()


@pytest.fixture
async def exporter(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[App]]]:
    """Starts an App, with basic auth when asked; its config file is tmp_path/config.yaml."""
    apps: list[App] = []

    async def start(basic_auth: bool = False) -> App:
        cfg = write_config(tmp_path / "config.yaml",
                           {"name": "a", "port": refused_port(), "tls": "none", "interval": "1h"})
        web = None
        if basic_auth:
            (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  ops: '{HASH}'\n")
            web = str(tmp_path / "web.yml")
        app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV, web_config=web)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


async def send(app: App, method: str, headers: dict[str, str], body: bytes = b"",
               path: str = "/-/reload") -> Reply:
    assert app.web is not None
    return await asyncio.to_thread(request, app.web.port, method, path, headers, body)


def reload_ok(app: App) -> float | None:
    assert app.web is not None
    text = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
    return value(text, "smtp_exporter_config_last_reload_successful")


async def test_put_is_refused_and_reloads_nothing(exporter: Any, tmp_path: Path) -> None:
    """PUT /-/reload answers 405 with Allow: POST and leaves the configuration alone."""
    app = await exporter()
    (tmp_path / "config.yaml").write_text("relays: [oops\n")  # a reload would fail
    status, body, headers = await send(app, "PUT", {"Content-Length": "0"})
    assert status == 405 and headers["Allow"] == "POST", body
    assert reload_ok(app) == 1
    status, body, _ = await send(app, "POST", {"Content-Length": "0"})
    assert status == 500 and "refused" in body  # POST does reach the reload
    assert reload_ok(app) == 0


async def test_cross_site_posts_are_refused(exporter: Any, tmp_path: Path) -> None:
    """Without a web config, a POST carrying another site's Origin or a cross-site
    Sec-Fetch-Site gets 403 and reloads nothing; same-origin pages and curl still reload."""
    app = await exporter()
    assert app.web is not None
    here = f"127.0.0.1:{app.web.port}"
    (tmp_path / "config.yaml").write_text("relays: [oops\n")  # a reload would fail
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": f"http://evil.example:{app.web.port}"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
        {"Origin": "not a url"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": f"http://{here}"},
    ):
        status, body, _ = await send(app, "POST", {**headers, "Content-Length": "0"})
        assert status == 403 and "Cross-site" in body, headers
    assert reload_ok(app) == 1, "a refused request reloaded the configuration"
    for headers in (
        {},
        {"Origin": f"http://{here}"},
        {"Origin": f"HTTP://{here.upper()}"},
        {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{here}"},
        {"Sec-Fetch-Site": "none"},
    ):
        status, body, _ = await send(app, "POST", {**headers, "Content-Length": "0"})
        assert status == 500 and "refused" in body, headers  # reached the (failing) reload


def test_cross_site_compares_host_and_port() -> None:
    """Origin and Host match on host and port, with the scheme's default port when a side
    names none; anything unparsable counts as cross-site."""
    assert not cross_site("127.0.0.1:9925", "http://127.0.0.1:9925", None)
    assert not cross_site("exporter.example", "https://exporter.example", None)
    assert not cross_site("exporter.example:443", "https://exporter.example", None)
    assert not cross_site("[::1]:9925", "http://[::1]:9925", "same-origin")
    assert not cross_site(None, None, None)
    assert cross_site("exporter.example", "http://exporter.example:9925", None)
    assert cross_site(None, "http://exporter.example", None)
    assert cross_site("exporter.example:99999", "http://exporter.example", None)
    assert cross_site("a.example", "javascript://a.example", None)
    assert cross_site("a.example", None, "same-site")


async def test_reload_body_must_be_small_and_well_framed(exporter: Any) -> None:
    """With valid credentials, /-/reload reads a body only with one non-negative
    Content-Length up to 4 KiB: malformed gets 400, chunked 411, too large 413."""
    app = await exporter(basic_auth=True)
    auth = {"Authorization": BASIC}
    for length in ("-1", "abc", "1e3", "+5", "0x10"):
        status, body, headers = await send(app, "POST", {**auth, "Content-Length": length})
        assert status == 400 and "Content-Length" in body, length
        assert headers.get("Connection") == "close"
    status, _, _ = await send(app, "POST", {**auth, "Transfer-Encoding": "chunked"})
    assert status == 411
    status, body, _ = await send(app, "POST", {**auth, "Content-Length": "4097"})
    assert status == 413 and "4096" in body
    status, body, _ = await send(app, "POST", {**auth, "Content-Length": "4096"},
                                 b"x" * 4096)
    assert status == 200 and body.startswith("config reloaded")
    status, body, _ = await send(app, "POST", {**auth, "Content-Length": "0"})
    assert status == 200 and body.startswith("config reloaded")


async def test_basic_auth_comes_before_the_method_and_the_body(exporter: Any) -> None:
    """Under basic auth, PUT and POST without credentials get 401 whatever their body
    framing, and with credentials PUT gets 405."""
    app = await exporter(basic_auth=True)
    for method in ("PUT", "POST"):
        for length in ("-1", "abc", "999999999", "0"):
            status, _, headers = await send(app, method, {"Content-Length": length})
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    status, _, headers = await send(app, "PUT", {"Authorization": BASIC,
                                                 "Content-Length": "0"})
    assert status == 405 and headers["Allow"] == "POST"
    status, _, _ = await send(app, "POST", {"Authorization": BASIC, "Content-Length": "0"},
                              path="/metrics")
    assert status == 405
