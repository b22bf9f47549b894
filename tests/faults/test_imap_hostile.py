"""Hostile IMAP servers on loopback (issue #18): a flood of untagged responses, a 300 MB
literal, a NO that echoes the password, a server that fails right after LOGIN. The watcher
drops the connection naming the limit passed, memory stays flat, /metrics keeps answering,
no password shows anywhere, and reconnects back off."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import re
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import App
from exporter.canary.mailbox import MailboxStatus, MailboxWatcher
from exporter.canary.store import MailboxView
from exporter.config import AuthConfig, AuthMechanism, MailboxConfig, Secret, TLSMode
from exporter.logs import JsonFormatter, LogfmtFormatter
from tests.faults.hostile_imap import HostileIMAP
from tests.faults.test_secrets import forms
from tests.helpers import assert_promtool_accepts, eventually, http, value
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port

USER = "canary@hostile.test"
# Distinctive, and with the characters LOGIN must quote: the marker must never show.
MARKER = "Hq42"
PASSWORD = f'imap-pw-{MARKER}-"q\\-SECRET'
PLAIN_PASSWORD = f"plain-pw-{MARKER}-SECRET"
ENVIRON = {"IMAP_PASSWORD": PASSWORD, "PLAIN_PASSWORD": PLAIN_PASSWORD}


def rss() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _mailbox(name: str, port: int, *, ca_file: str | None = None, mechanism: str = "login",
             env: str = "IMAP_PASSWORD") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name, "host": "127.0.0.1", "port": port, "poll_interval": "1s",
        "timeout": "10s", "idle": False, "trusted_authserv_ids": ["mx"],
        "auth": {"mechanism": mechanism, "username": USER, "password_env": env}}
    if ca_file is None:
        doc.update(tls="none", allow_plaintext_auth=True)
    else:
        doc.update(tls="implicit", ca_file=ca_file)
    return doc


async def _start(apps: list[App], tmp_path: Path, *mailboxes: dict[str, Any]) -> tuple[App, str]:
    doc = {
        "instance": "hostile", "state_dir": str(tmp_path / "state"),
        "mailboxes": list(mailboxes),
        "relays": [{"name": "relay", "host": "127.0.0.1", "port": refused_port(), "tls": "none",
                    "interval": "1h", "timeout": "1s",
                    "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                               "to": [{"address": f"{m['name']}@example.test",
                                       "mailbox": m["name"]} for m in mailboxes]}}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENVIRON)
    app.canaries.first_spread = 1e9
    await app.start()
    apps.append(app)
    assert app.web is not None
    return app, f"http://127.0.0.1:{app.web.port}"


def _box(app: App, name: str = "box") -> MailboxView:
    return app.canary_store.snapshot().mailboxes[name]


async def _watch_under_attack(base: str, server: HostileIMAP, seconds: float,
                              baseline: int) -> tuple[float, int, list[str]]:
    """Scrape /metrics back to back for ``seconds``: the slowest answer, the peak RSS growth,
    and the expositions scraped while the server was sending its flood or literal."""
    slowest, peak, during = 0.0, 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = server.flooding > 0
        started = time.monotonic()
        status, text, _ = await asyncio.to_thread(http, base + "/metrics", timeout=5)
        slowest = max(slowest, time.monotonic() - started)
        assert status == 200
        if busy:
            during.append(text)
        peak = max(peak, rss() - baseline)
        await asyncio.sleep(0.005)
    return slowest, peak, during


# -- memory ------------------------------------------------------------------------------------


async def test_untagged_flood_is_cut_off(tmp_path: Path, server_loop: ServerLoop,
                                         apps: list[App]) -> None:
    """A server that floods untagged responses after LOGIN (1 KiB lines, up to 200 MB per
    connection): the watcher drops the connection past the limit, the mailbox reads down
    naming it, RSS grows by less than 48 MiB, and /metrics answers within 1 s and passes
    promtool during the flood."""
    server = HostileIMAP(server_loop, "flood", armed=False)
    try:
        app, base = await _start(apps, tmp_path, _mailbox("box", server.port))
        await eventually(lambda: _box(app).up, timeout=10)
        gc.collect()
        baseline = rss()
        server.armed = True
        slowest, growth, during = await _watch_under_attack(base, server, 5.0, baseline)
        error = _box(app).error or ""
        assert re.search(r"passed the limit on (unread )?untagged response", error), error
        text = (await asyncio.to_thread(http, base + "/metrics"))[1]
        assert value(text, "smtp_mailbox_up", mailbox="box") == 0
        assert len(server.connections) >= 3, "dropped, and retried"
        assert server.sent >= 16 << 20, server.sent
        assert during, "no scrape overlapped the flood"
        assert_promtool_accepts(during[-1])
        assert slowest < 1.0, f"/metrics took {slowest:.2f} s"
        assert growth < 48 << 20, f"RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        server.close()


async def test_huge_literal_is_refused_unread(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    apps: list[App],
) -> None:
    """A server (implicit TLS) that answers the header FETCH with a 300 MB literal, streamed:
    the watcher drops the connection on the literal's announced size, before reading it, the
    mailbox reads down naming the limit, RSS grows by less than 32 MiB, and /metrics answers
    within 1 s."""
    server = HostileIMAP(server_loop, "literal", ssl_context=server_ctx, armed=False)
    try:
        app, base = await _start(apps, tmp_path, _mailbox("box", server.port, ca_file=ca_file))
        await eventually(lambda: _box(app).up, timeout=10)
        gc.collect()
        baseline = rss()
        server.armed = True
        slowest, growth, _ = await _watch_under_attack(base, server, 3.0, baseline)
        error = _box(app).error or ""
        assert "passed the limit on literal size (314572800 bytes announced" in error, error
        text = (await asyncio.to_thread(http, base + "/metrics"))[1]
        assert value(text, "smtp_mailbox_up", mailbox="box") == 0
        assert_promtool_accepts(text)
        assert server.sent < 64 << 20, f"{server.sent / 2**20:.0f} MiB of the literal read"
        assert slowest < 1.0, f"/metrics took {slowest:.2f} s"
        assert growth < 32 << 20, f"RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        server.close()


# -- secrets -----------------------------------------------------------------------------------


async def test_password_echoed_in_no_shows_nowhere(
    tmp_path: Path, server_loop: ServerLoop, apps: list[App], caplog: pytest.LogCaptureFixture,
) -> None:
    """A server whose NO echoes the LOGIN arguments and the decoded AUTHENTICATE PLAIN
    payload (with a byte that is not ASCII): the mailboxes read down with "login refused"
    and the echo redacted; at debug level, no log line (logfmt or JSON), metric, status page
    or status JSON shows the password in any form."""
    caplog.set_level(logging.DEBUG)
    server = HostileIMAP(server_loop, "echo")
    try:
        app, base = await _start(
            apps, tmp_path, _mailbox("box", server.port),
            _mailbox("plainbox", server.port, mechanism="plain", env="PLAIN_PASSWORD"))
        for name in ("box", "plainbox"):
            await eventually(lambda name=name: "login refused" in (_box(app, name).error  # type: ignore[misc]
                                                                   or ""), timeout=10)
        assert len(server.connections) >= 2
        errors = [_box(app, name).error or "" for name in ("box", "plainbox")]
        assert all("***" in e for e in errors), errors
        outputs = [await asyncio.to_thread(lambda p=p: http(base + p)[1])  # type: ignore[misc]
                   for p in ("/metrics", "/", "/status.json")]
        records = list(caplog.records)
        outputs += [caplog.text, json.dumps(errors)]
        outputs += [fmt.format(r) for fmt in (LogfmtFormatter(), JsonFormatter())
                    for r in records]
        assert any("login refused" in o for o in outputs[3:])
        for secret in (PASSWORD, PLAIN_PASSWORD):
            for form in [*forms(secret, USER), MARKER]:
                leaks = [i for i, text in enumerate(outputs) if form in text]
                assert not leaks, f"{form!r} in outputs {leaks[:5]}"
    finally:
        server.close()


# -- reconnects --------------------------------------------------------------------------------


async def test_server_failing_after_login_is_retried_with_backoff(
    tmp_path: Path, server_loop: ServerLoop, apps: list[App], caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts every LOGIN and drops the connection at the command after it
    (LIST): in 7.5 s the watcher connects at most 4 times, 1, 2 and 4 s apart (a login does
    not start the backoff over), with one warning each, and the mailbox reads down."""
    caplog.set_level(logging.WARNING, logger="exporter.canary.mailbox")
    server = HostileIMAP(server_loop, "drop", drop_on=(b"LIST",))
    try:
        _, base = await _start(apps, tmp_path, _mailbox("box", server.port))
        await asyncio.sleep(7.5)
        times = list(server.connections)
        gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
        assert 3 <= len(times) <= 4, gaps
        assert all(gap >= 0.9 * 2**i for i, gap in enumerate(gaps)), gaps
        warnings = [r for r in caplog.records if r.getMessage() == "mailbox unavailable"]
        assert len(times) - 1 <= len(warnings) <= len(times)
        text = (await asyncio.to_thread(http, base + "/metrics"))[1]
        assert value(text, "smtp_mailbox_up", mailbox="box") == 0
    finally:
        server.close()


class StepClock:
    """A monotonic clock that moves ``step`` seconds at each reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(("step", "waits"), [(0.0, [0.05, 0.1, 0.2, 0.4]),
                                             (400.0, [0.05, 0.05, 0.05, 0.05])],
                         ids=["never-healthy", "healthy-each-time"])
async def test_backoff_starts_over_only_after_a_healthy_period(
    server_loop: ServerLoop, caplog: pytest.LogCaptureFixture, step: float,
    waits: list[float],
) -> None:
    """Against a server that drops each connection at SELECT, after the mailbox was reported
    up: the waits double while no connection stayed up for the healthy period (300 s, on an
    injected clock), and start over after each one that did."""
    caplog.set_level(logging.WARNING, logger="exporter.canary.mailbox")
    server = HostileIMAP(server_loop, "drop", drop_on=(b"SELECT",))
    config = MailboxConfig(
        name="box", host="127.0.0.1", port=server.port, tls=TLSMode.NONE,
        allow_plaintext_auth=True, idle=False, timeout=5.0,
        auth=AuthConfig(AuthMechanism.LOGIN, USER, Secret(PASSWORD)))
    statuses: list[MailboxStatus] = []
    watcher = MailboxWatcher(config, instance="t", loop=asyncio.get_running_loop(),
                             on_arrival=lambda _: None, on_status=statuses.append,
                             backoff=(0.05, 5.0), healthy_after=300.0, clock=StepClock(step))
    watcher.start()
    try:
        await eventually(lambda: len(server.connections) >= len(waits) + 1, timeout=10)
    finally:
        await asyncio.to_thread(watcher.stop)
        server.close()
    retries = [getattr(r, "retry_in", None) for r in caplog.records
               if r.getMessage() == "mailbox unavailable"]
    assert retries[:len(waits)] == waits
    assert any(s.up for s in statuses) and not statuses[-1].up
