"""The exporter as a whole in this process: metrics, endpoints, status page, reload, schedule."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.app import App
from exporter.model import Phase, Reason
from tests.clock import VirtualClock
from tests.conftest import ENV, auth, write_config
from tests.helpers import (
    assert_promtool_accepts,
    eventually,
    http,
    metrics_until,
    samples,
    value,
)
from tests.relay.fakeprobe import FakeProbe
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port
from tests.servers.smtp import PASSWORD, TOKEN, Recorder, start_relay
from tests.servers.tokens import serve_tokens, token_reply


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Any]:
    """Start an App on a config file; yields a starter that returns (app, base URL)."""
    apps: list[App] = []

    async def start(*relays: dict[str, Any], **kw: Any) -> tuple[App, str]:
        path = write_config(tmp_path / "config.yaml", *relays, **kw.pop("top", {}))
        app = App(str(path), listen=("127.0.0.1", 0), environ=ENV, **kw)
        await app.start()
        apps.append(app)
        assert app.web is not None
        return app, f"http://127.0.0.1:{app.web.port}"

    yield start
    for app in apps:
        await app.stop()


async def get(url: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    return await asyncio.to_thread(http, url, **kw)


async def test_every_series_exists_before_the_first_probe(running: Any) -> None:
    """Before any probe: success 0, the probe duration histogram empty, no failure reason
    and no phase timing yet (they appear once a probe has one); an unsharded exporter is
    shard 0 of 1; the schedule's lag histograms and probes in flight are there at 0."""
    _, base = await running({"name": "a", "port": refused_port(), "interval": "1h",
                             "tls": "none"})
    _, text, _ = await get(base + "/metrics")
    assert value(text, "smtp_probe_success", relay="a") == 0
    assert value(text, "smtp_probe_total_duration_seconds_count", relay="a") == 0
    assert value(text, "smtp_probe_total_duration_seconds_bucket", relay="a", le="+Inf") == 0
    for reason in Reason:
        assert value(text, "smtp_probe_failures_total", relay="a", reason=reason.value) is None
    for phase in Phase:
        assert value(text, "smtp_probe_phase_duration_seconds", relay="a",
                     phase=phase.value) is None
    assert value(text, "smtp_probe_last_run_timestamp_seconds", relay="a") == 0
    assert value(text, "smtp_exporter_config_last_reload_successful") == 1
    assert value(text, "smtp_exporter_shard_info", shard="0", total_shards="1") == 1
    assert value(text, "smtp_tls_cert_not_after_timestamp_seconds", relay="a") is None
    for kind in ("probe", "canary", "dns"):  # the scheduler's health, from start-up
        assert value(text, "smtp_exporter_schedule_lag_seconds_count", kind=kind) == 0
    assert value(text, "smtp_exporter_probes_in_flight") == 0
    assert value(text, "smtp_exporter_event_loop_lag_seconds_bucket", le="+Inf") is not None


async def test_metrics_after_real_probes(
    running: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """A good relay and a wrong-password relay show success, reasons, phases and TLS facts."""
    good = start_relay(server_loop, ctx=server_ctx)
    bad = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    common = {"tls": "starttls", "ca_file": ca_file, "interval": "1s", "timeout": "900ms",
              "auth": auth("plain")}
    _, base = await running({"name": "good", "port": good.port, **common},
                            {"name": "bad", "port": bad.port, **common})

    def probed_twice(text: str) -> bool:
        return all((value(text, "smtp_probes_total", relay=r) or 0) >= 2 for r in ("good", "bad"))

    text = await metrics_until(base, probed_twice, what="both relays to be probed twice")
    assert value(text, "smtp_probe_success", relay="good") == 1
    assert value(text, "smtp_probe_success", relay="bad") == 0
    assert (value(text, "smtp_probe_failures_total", relay="bad", reason="auth_failed") or 0) >= 2
    assert [k for k in samples(text) if k[0] == "smtp_probe_failures_total"] == [
        ("smtp_probe_failures_total", frozenset({("relay", "bad"), ("reason", "auth_failed")}))]
    failing = [k for k in samples(text) if k[0] == "smtp_probe_last_failure_info"]
    assert failing == [("smtp_probe_last_failure_info", frozenset({
        ("relay", "bad"), ("reason", "auth_failed"), ("phase", "auth"),
        ("hint", "credentials refused: check username and password (app password or API key, "
                 "no trailing space)"), ("cause", "")}))]
    for phase in ("resolve", "connect", "greeting", "ehlo", "tls", "auth", "quit"):
        assert (value(text, "smtp_probe_phase_duration_seconds", relay="good",
                      phase=phase) or 0) > 0
    assert value(text, "smtp_probe_phase_duration_seconds", relay="good", phase="rcpt") is None
    assert (value(text, "smtp_probe_total_duration_seconds_count", relay="good") or 0) >= 2
    not_after = value(text, "smtp_tls_cert_not_after_timestamp_seconds", relay="good")
    assert not_after is not None and not_after > time.time()
    assert value(text, "smtp_tls_cert_verified", relay="good") == 1
    assert PASSWORD not in text


async def test_exposition_passes_promtool(
    running: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """`promtool check metrics` accepts the exposition, failures and histograms included."""
    good = start_relay(server_loop, ctx=server_ctx)
    _, base = await running(
        {"name": "good", "port": good.port, "tls": "starttls", "ca_file": ca_file,
         "interval": "1s", "timeout": "900ms"},
        {"name": "refused", "port": refused_port(), "tls": "none", "interval": "1s",
         "timeout": "900ms"},
    )
    def both_probed(text: str) -> bool:
        return all((value(text, "smtp_probes_total", relay=r) or 0) >= 1
                   for r in ("good", "refused"))

    text = await metrics_until(base, both_probed, what="a first probe of both relays")
    await asyncio.to_thread(assert_promtool_accepts, text)


async def test_endpoints_and_status_page(
    running: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """Health, readiness, gzip, OpenMetrics (with the failure counter's _created), 404/405,
    and a status page with reason, hint and transcript."""
    bad = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    app, base = await running({"name": "bad", "port": bad.port, "tls": "starttls",
                               "ca_file": ca_file, "interval": "1s", "timeout": "900ms",
                               "auth": auth("plain")})
    await eventually(lambda: app.store.snapshot().relays["bad"].last is not None,
                     what="a first probe of the relay")
    assert (await get(base + "/-/healthy"))[0] == 200
    assert (await get(base + "/-/ready"))[0] == 200
    assert (await get(base + "/-/reload"))[0] == 405
    assert (await get(base + "/nope"))[0] == 404
    status, page, headers = await get(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "auth_failed" in page
    assert "credentials refused" in page
    assert "535 5.7.8 Authentication credentials invalid" in page
    assert "AUTH PLAIN ***" in page
    assert PASSWORD not in page
    # the recent probes as a stacked bar chart: one bar per probe, a red foot for failures
    assert "<svg" in page
    assert "<title>tls " in page
    assert "<title>auth_failed</title>" in page
    req = urllib.request.Request(base + "/metrics", headers={"Accept-Encoding": "gzip"})
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5).read())
    assert b"smtp_probe_success" in gzip.decompress(body)
    req = urllib.request.Request(base + "/metrics", headers={
        "Accept-Encoding": "gzip", "Accept": "application/openmetrics-text; version=1.0.0"})
    answer = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5))
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    text = gzip.decompress(answer.read()).decode()
    parsed = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert "process_cpu_seconds" in families and "smtp_exporter_build_info" in families
    assert [s.value for s in families["smtp_probe_success"].samples] == [0]
    failures = families["smtp_probe_failures"].samples
    assert {s.name for s in failures} == {"smtp_probe_failures_total",
                                          "smtp_probe_failures_created"}
    _, status_json, _ = await get(base + "/status.json")
    assert '"reason": "auth_failed"' in status_json


async def test_reload_adopts_good_and_refuses_bad_config(
    running: Any, tmp_path: Path
) -> None:
    """A valid reload swaps relays at once; an invalid one is refused and the old one runs on."""
    port = refused_port()
    app, base = await running({"name": "a", "port": port, "tls": "none", "interval": "1h"},
                              {"name": "b", "port": port, "tls": "none", "interval": "1h"})
    write_config(tmp_path / "config.yaml",
                 {"name": "b", "port": port, "tls": "none", "interval": "1h"},
                 {"name": "c", "port": port, "tls": "none", "interval": "1h"})
    status, body, _ = await get(base + "/-/reload", method="POST")
    assert (status, body) == (200, "config reloaded: 2 relays\n")
    text = (await get(base + "/metrics"))[1]
    assert value(text, "smtp_probe_success", relay="a") is None
    assert value(text, "smtp_probe_success", relay="c") == 0
    assert app.scheduler.relays == ["b", "c"]

    (tmp_path / "config.yaml").write_text("relays:\n  - name: d\n    port: 70000\n")
    status, body, _ = await get(base + "/-/reload", method="POST")
    assert status == 500
    assert "relays[0].port: 70000 is out of range" in body
    text = (await get(base + "/metrics"))[1]
    assert value(text, "smtp_exporter_config_last_reload_successful") == 0
    assert value(text, "smtp_probe_success", relay="c") == 0
    assert app.scheduler.relays == ["b", "c"]
    assert "The last configuration reload failed" in (await get(base + "/"))[1]


async def test_hanging_relay_delays_no_other(running: Any) -> None:
    """While one relay's probe hangs, another keeps its 1 s schedule: 9 to 11 probes in 10
    virtual seconds (a first start within 1 s, then 1 s ± 5 % apart)."""
    clock = VirtualClock()
    probe = FakeProbe(clock, held=lambda name: name == "hang")
    app, _ = await running(
        {"name": "hang", "port": 25, "tls": "none", "interval": "10s", "timeout": "8s"},
        {"name": "ok", "port": 25, "tls": "none", "interval": "1s", "timeout": "900ms"},
        top={"max_concurrent_probes": 2}, probe=probe, clock=clock,
    )
    await clock.advance(10)
    snap = app.store.snapshot()
    assert probe.running["hang"] == 1 and len(probe.starts["hang"]) == 1  # still hanging
    assert snap.relays["hang"].probes == 0
    assert 9 <= snap.relays["ok"].probes <= 11, probe.starts["ok"]


async def test_a_relay_is_never_probed_twice_at_once(running: Any) -> None:
    """Probes of 1.5 s on a 1 s interval, 5 relays, limit 2: a relay never overlaps itself
    (its next probe starts 1 s after the last ends), at most 2 run at once, and both slots
    stay busy: 38 to 40 probes end in 30 virtual seconds."""
    clock = VirtualClock()
    probe = FakeProbe(clock, takes=lambda _: 1.5)
    relays = [{"name": f"r{i}", "port": 25, "tls": "none", "interval": "1s",
               "timeout": "900ms"} for i in range(5)]
    app, _ = await running(*relays, probe=probe, clock=clock, top={"max_concurrent_probes": 2})
    await clock.advance(30)
    assert probe.peak_per_relay == 1
    assert probe.peak == 2
    for starts in probe.starts.values():
        assert all(b - a >= 2.5 for a, b in itertools.pairwise(starts)), starts
    assert 38 <= sum(v.probes for v in app.store.snapshot().relays.values()) <= 40


async def test_one_clock_drives_probes_dns_checks_and_canary_sends(
    running: Any, tmp_path: Path,
) -> None:
    """The App's clock runs every schedule: nothing starts before it moves; the relay host is
    checked in DNS within the first 10 s, the relay probed once within its first minute, and
    a canary whose first send may come any time in its hour is sent within that virtual
    hour."""
    clock = VirtualClock()
    probe = FakeProbe(clock)
    app, _ = await running(
        {"name": "r", "port": refused_port(), "tls": "none", "interval": "60s",
         "canary": {"from": "c@example.test", "interval": "1h",
                    "to": [{"address": "a@example.test", "mailbox": "box"}]}},
        top={"state_dir": str(tmp_path / "state"), "dns": {"interval": "30s"},
             "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                            "tls": "implicit",
                            "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}]},
        probe=probe, clock=clock,
    )
    app.canaries.first_spread = 3600.0  # on the loop's clock the first send would take real time
    dns_checks: list[object] = []
    record = app.dns_store.record

    def count_dns(report: Any) -> None:
        dns_checks.append(report)
        record(report)

    app.dns_store.record = count_dns

    def canaries() -> int:
        view = app.canary_store.snapshot().senders["r"]
        return int(view.sent + sum(view.failures.values()))

    await clock.advance(0)
    assert (probe.calls, len(dns_checks), canaries()) == (0, 0, 0)
    await clock.advance(10)  # the DNS check's first run starts within the first 10 s ...
    await eventually(lambda: len(dns_checks) == 1, what="the DNS check of the relay host",
                     timeout=15)  # ... and ends in real time
    await clock.advance(50)  # the probe's first run: within its 60 s interval
    assert probe.calls == 1
    await clock.advance(3540)
    await eventually(lambda: canaries() >= 1, what="a canary send in the first hour",
                     timeout=5)


async def test_xoauth2_refresh_through_a_token_endpoint(
    running: Any, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """An oauth2: relay fetches its token from a loopback endpoint, logs in, and exports the
    token's expiry; the endpoint is asked once, not at every probe."""
    relay = start_relay(server_loop, ctx=server_ctx)
    with serve_tokens() as endpoint:
        endpoint.default = token_reply(TOKEN, expires_in=3600)
        _, base = await running({
            "name": "gmail", "port": relay.port, "tls": "starttls", "ca_file": ca_file,
            "interval": "1s", "timeout": "900ms",
            "auth": {"mechanism": "xoauth2", "username": "probe@example.test",
                     "oauth2": {"token_url": endpoint.url, "client_id": "cid",
                                "refresh_token_env": "RELAY_PASSWORD"}},
        })
        text = await metrics_until(
            base, lambda text: (value(text, "smtp_probes_total", relay="gmail") or 0) >= 2,
            what="two probes of the oauth2 relay")
    assert value(text, "smtp_probe_success", relay="gmail") == 1
    expiry = value(text, "smtp_oauth2_token_expiry_timestamp_seconds", relay="gmail")
    assert expiry is not None and abs(expiry - (time.time() + 3600)) < 30
    assert value(text, "smtp_oauth2_token_refresh_failures_total", relay="gmail") == 0
    assert len(endpoint.forms) == 1
    assert endpoint.forms[0]["grant_type"] == "refresh_token"
    assert relay.recorder.seen_auth.count("XOAUTH2") >= 2
    assert TOKEN not in text


async def test_tls_verify_false_is_warned_at_start_and_on_the_status_page(
    running: Any, server_loop: ServerLoop, self_signed_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A relay with tls_verify: false is named in a start-up warning and marked on the status
    page and in smtp_relay_info; a verifying relay is not."""
    relay = start_relay(server_loop, ctx=self_signed_ctx, implicit=True)
    caplog.set_level("WARNING", logger="exporter.app")
    _, base = await running(
        {"name": "unverified", "port": relay.port, "tls": "implicit", "tls_verify": False,
         "interval": "1h"},
        {"name": "verified", "port": relay.port, "tls": "implicit", "interval": "1h"},
    )
    warned = [r for r in caplog.records if r.getMessage() == "config warning"]
    problems = [str(getattr(r, "problem", "")) for r in warned]
    assert any(p.startswith("relays[0].tls_verify: certificate verification is off")
               for p in problems), problems
    assert not any(p.startswith("relays[1]") for p in problems)
    page = (await get(base + "/"))[1]
    row = page[page.index("<b>unverified</b>"):page.index("<b>verified</b>")]
    assert "tls_verify off" in row
    assert "tls_verify off" not in page[page.index("<b>verified</b>"):]
    assert "certificate verification is off for this relay" in page
    text = (await get(base + "/metrics"))[1]
    infos = {dict(labels)["relay"]: dict(labels)["tls_verify"]
             for (name, labels) in samples(text) if name == "smtp_relay_info"}
    assert infos == {"unverified": "false", "verified": "true"}
