"""/probe as Prometheus and a person use it: one probe of the target named in the query, with
a module's settings and credentials, answered with that probe's metrics only."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bcrypt
import pytest

from exporter.app import App
from exporter.model import Phase
from tests.conftest import ENV, write_config
from tests.helpers import assert_promtool_accepts, http, samples, value
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port, silent, start_scripted
from tests.servers.smtp import PASSWORD, USER, start_relay

WEB_PASSWORD = "probe-web-pass-2291"
BASIC = "Basic " + base64.b64encode(f"prom:{WEB_PASSWORD}".encode()).decode()
Reply = tuple[int, str, dict[str, str]]


def modules(ca_file: str) -> dict[str, Any]:
    return {
        "submission": {"ca_file": ca_file, "timeout": "10s",
                       "auth": {"username": USER, "password_env": "RELAY_PASSWORD"}},
        "plain": {"tls": "none", "timeout": "10s"},
    }


@pytest.fixture
async def exporter(tmp_path: Path, ca_file: str) -> AsyncIterator[Callable[..., Awaitable[App]]]:
    """Starts an App whose config has the modules above (and basic auth when asked)."""
    apps: list[App] = []

    async def start(basic_auth: bool = False, **top: Any) -> App:
        cfg = write_config(tmp_path / "config.yaml",
                           {"name": "a", "port": refused_port(), "tls": "none", "interval": "1h"},
                           modules=modules(ca_file), **top)
        web = None
        if basic_auth:
            hashed = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
            (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
            web = str(tmp_path / "web.yml")
        app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV, web_config=web)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


async def probe(app: App, query: str, headers: dict[str, str] | None = None,
                timeout: float = 20.0) -> Reply:
    assert app.web is not None
    url = f"http://127.0.0.1:{app.web.port}/probe?{query}"
    return await asyncio.to_thread(http, url, headers=headers, timeout=timeout)


async def test_good_target_answers_success_and_phase_gauges(
    exporter: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """A STARTTLS relay probed with a module's credentials: success 1, every handshake phase
    timed as a gauge, the TLS facts, no failure series, nothing about configured relays, and
    promtool accepts the answer."""
    app = await exporter()
    relay = start_relay(server_loop, ctx=server_ctx)
    status, body, headers = await probe(app, f"target=127.0.0.1:{relay.port}&module=submission")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    assert value(body, "smtp_probe_success") == 1
    for phase in (Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.TLS, Phase.AUTH):
        assert (value(body, "smtp_probe_phase_duration_seconds", phase=phase.value) or 0) > 0
    assert value(body, "smtp_probe_phase_duration_seconds", phase="rcpt") == 0
    duration = value(body, "smtp_probe_duration_seconds")
    assert duration is not None and 0 < duration < 10
    assert value(body, "smtp_tls_cert_verified") == 1
    assert (value(body, "smtp_tls_cert_not_after_timestamp_seconds") or 0) > time.time()
    assert not [k for k in samples(body) if k[0] == "smtp_probe_failure_info"]
    assert "relay=" not in body and "smtp_relay_info" not in body
    assert relay.recorder.seen_auth == ["PLAIN"]
    assert_promtool_accepts(body)
    metrics = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
    assert value(metrics, "smtp_exporter_probe_requests_total", module="submission",
                 result="success") == 1
    assert value(metrics, "smtp_exporter_probe_requests_total", module="plain",
                 result="failure") == 0


async def test_closed_port_reports_connect_refused(exporter: Any) -> None:
    """Nothing listening: success 0 and smtp_probe_failure_info names connect_refused in the
    connect phase."""
    app = await exporter()
    status, body, _ = await probe(app, f"target=127.0.0.1:{refused_port()}&module=plain")
    assert status == 200, body
    assert value(body, "smtp_probe_success") == 0
    assert value(body, "smtp_probe_failure_info", reason="connect_refused", phase="connect") == 1


BAD_REQUESTS = [
    ("target=127.0.0.1:25&module=nope", 'unknown module "nope"'),
    ("target=127.0.0.1:25", "module missing"),
    ("module=plain", "target missing"),
    ("target=127.0.0.1&module=plain", "target has no port"),
    ("target=bad_host!:25&module=plain", "is not a hostname or IP address"),
    ("target=127.0.0.1:70000&module=plain", "out of range"),
    ("target=127.0.0.1:0&module=plain", "out of range"),
    ("target=me:secret@127.0.0.1:25&module=plain", "target carries credentials"),
    ("target=127.0.0.1:25&module=plain&password=hunter2", "credentials come only from"),
    ("target=smtp://127.0.0.1:25&module=plain", "no scheme"),
    ("target=::1:25&module=plain", "IPv6 address in brackets"),
    ("target=127.0.0.1:25&module=plain&module=plain", "given twice"),
    ("target=127.0.0.1:25&module=plain&timeout=1", 'unknown parameter "timeout"'),
    ("target=127.0.0.1:25&module=plain&debug=yes", "use debug=true"),
]


async def test_bad_requests_get_a_one_line_400(exporter: Any) -> None:
    """An unknown module or a target that is not HOST:PORT is a 400 whose body is one line
    saying what to fix; a password offered in the query is never echoed. Each is counted."""
    app = await exporter()
    for query, says in BAD_REQUESTS:
        status, body, _ = await probe(app, query)
        assert status == 400, (query, body)
        assert says in body and body.count("\n") == 1, (query, body)
        assert "hunter2" not in body and ":secret" not in body, (query, body)
    metrics = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
    assert value(metrics, "smtp_exporter_probe_requests_total", module="",
                 result="bad_request") == len(BAD_REQUESTS)


async def test_bad_scrape_timeout_header_is_a_400(exporter: Any) -> None:
    """A scrape timeout header that is not a positive number is refused in one line."""
    app = await exporter()
    for header in ("soon", "-1", "nan"):
        status, body, _ = await probe(app, "target=127.0.0.1:25&module=plain",
                                      {"X-Prometheus-Scrape-Timeout-Seconds": header})
        assert status == 400 and "X-Prometheus-Scrape-Timeout-Seconds" in body, (header, body)


async def test_scrape_timeout_shorter_than_module_timeout_ends_in_time(
    exporter: Any, server_loop: ServerLoop,
) -> None:
    """A server that never greets, a module timeout of 10 s and a scrape timeout of 2 s: the
    answer comes within 3 s, with the probe given 1.5 s and failing on the greeting."""
    app = await exporter()
    port = start_scripted(server_loop, silent)
    started = time.monotonic()
    status, body, _ = await probe(app, f"target=127.0.0.1:{port}&module=plain",
                                  {"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    elapsed = time.monotonic() - started
    assert status == 200, body
    assert elapsed < 3.0, f"answered after {elapsed:.2f} s"
    assert value(body, "smtp_probe_success") == 0
    assert value(body, "smtp_probe_timeout_seconds") == 1.5
    assert value(body, "smtp_probe_failure_info", reason="greeting_timeout",
                 phase="greeting") == 1


async def test_basic_auth_guards_probe(exporter: Any, server_loop: ServerLoop,
                                       server_ctx: ssl.SSLContext) -> None:
    """Under --web.config.file basic auth, /probe without credentials is a 401 and probes
    nothing; with them it probes."""
    app = await exporter(basic_auth=True)
    relay = start_relay(server_loop, ctx=server_ctx)
    query = f"target=127.0.0.1:{relay.port}&module=submission"
    status, _, headers = await probe(app, query)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    status, _, _ = await probe(app, query, {"Authorization": "Basic " + base64.b64encode(
        f"prom:{WEB_PASSWORD}x".encode()).decode()})
    assert status == 401
    assert relay.recorder.seen_auth == []
    status, body, _ = await probe(app, query, {"Authorization": BASIC})
    assert status == 200 and value(body, "smtp_probe_success") == 1, body


async def test_debug_shows_the_transcript_with_auth_masked(
    exporter: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """debug=true answers text: the module, the SMTP conversation with the AUTH payload
    masked, and the metrics a scrape would get; the password appears in no form."""
    app = await exporter()
    relay = start_relay(server_loop, ctx=server_ctx)
    status, body, headers = await probe(
        app, f"target=127.0.0.1:{relay.port}&module=submission&debug=true")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "with module submission" in body
    assert "AUTH PLAIN ***" in body
    assert "STARTTLS" in body and "221" in body
    assert "smtp_probe_success 1.0" in body
    encoded = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in body and encoded not in body


async def test_preset_name_is_a_module(exporter: Any, server_loop: ServerLoop,
                                       server_ctx: ssl.SSLContext) -> None:
    """module=sendgrid probes the target with the preset's settings: STARTTLS on a port the
    preset does not list, verified against the system CAs, so the test CA's certificate fails
    as tls_cert_invalid."""
    app = await exporter()
    relay = start_relay(server_loop, ctx=server_ctx)
    status, body, _ = await probe(app, f"target={quote(f'127.0.0.1:{relay.port}')}"
                                       "&module=sendgrid")
    assert status == 200, body
    assert value(body, "smtp_probe_failure_info", reason="tls_cert_invalid", phase="tls") == 1


async def test_probe_shares_the_max_concurrent_probes_limit(
    exporter: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """With max_concurrent_probes: 1 held by the schedule, /probe waits for the slot: it
    answers 503 when none comes free within the scrape timeout, and probes once it does."""
    app = await exporter(max_concurrent_probes=1)
    relay = start_relay(server_loop, ctx=server_ctx)
    query = f"target=127.0.0.1:{relay.port}&module=submission"
    short = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
    async with app.scheduler.limiter:
        status, body, _ = await probe(app, query, short)
        assert status == 503 and "max_concurrent_probes=1" in body, body
        assert relay.recorder.seen_auth == []
        waiting = asyncio.create_task(probe(app, query, {
            "X-Prometheus-Scrape-Timeout-Seconds": "5"}))
        await asyncio.sleep(0.5)
        assert not waiting.done()
    status, body, _ = await waiting
    assert status == 200 and value(body, "smtp_probe_success") == 1, body
    assert app.web is not None
    metrics = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
    assert value(metrics, "smtp_exporter_probe_requests_total", module="submission",
                 result="busy") == 1


async def test_bad_module_at_reload_keeps_the_old_modules(
    exporter: Any, tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """A reload whose module sets host is refused with that one line, and /probe keeps
    answering with the modules of the running config."""
    app = await exporter()
    assert app.web is not None
    relay = start_relay(server_loop, ctx=server_ctx)
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(
        text.replace("  plain:\n", "  plain:\n    host: smtp.example.com\n"))
    status, body, _ = await asyncio.to_thread(
        http, f"http://127.0.0.1:{app.web.port}/-/reload", method="POST")
    assert status == 500
    assert "modules.plain.host: the host comes from /probe's target=HOST:PORT" in body
    status, body, _ = await probe(app, f"target=127.0.0.1:{relay.port}&module=submission")
    assert status == 200 and value(body, "smtp_probe_success") == 1, body


async def test_request_counter_series_come_only_from_the_config(exporter: Any) -> None:
    """smtp_exporter_probe_requests_total has a series per configured module and listed
    preset; any SES region counts as ses-<region>, so requests cannot grow new series."""
    app = await exporter()
    port = refused_port()
    for module in ("ses-eu-west-1", "ses-zz-nowhere-9", "gmail"):
        status, body, _ = await probe(app, f"target=127.0.0.1:{port}&module={module}")
        assert status == 200 and value(body, "smtp_probe_success") == 0, body
    assert app.web is not None
    metrics = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
    series = {dict(labels)["module"] for name, labels in samples(metrics)
              if name == "smtp_exporter_probe_requests_total"}
    assert series == {"submission", "plain", "gmail", "ses-<region>"}
    assert value(metrics, "smtp_exporter_probe_requests_total", module="ses-<region>",
                 result="failure") == 2
