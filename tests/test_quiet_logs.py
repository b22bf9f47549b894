"""Logs at fleet scale: a healthy start logs a handful of info lines however many relays there
are, plus one summary once every relay was probed; a failure and its recovery log one line
each, for relay probes, DNS checks and canary sends alike."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exporter.app import App, relay_infos, startup_summary
from exporter.canary import CanaryManager, CanaryStore
from exporter.canary.result import Arrival, CanarySent
from exporter.config import RelayConfig
from exporter.dns.manager import log_changes
from exporter.dns.result import CheckName, CheckStatus, DNSCheck, DomainReport, RelayDNSReport
from exporter.dns.store import DNSSnapshot
from exporter.model import Reason
from exporter.relay.result import RelayResult
from exporter.relay.store import ResultStore
from tests.clock import VirtualClock
from tests.conftest import ENV, make_config, write_config
from tests.helpers import eventually
from tests.relay.fakeprobe import FakeProbe


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The exporter's lines a user sees at the default level, info."""
    return [r for r in caplog.records
            if r.name.startswith("exporter") and r.levelno >= logging.INFO]


def relay(name: str) -> dict[str, Any]:
    return {"name": name, "port": 25, "tls": "none", "interval": "60s", "timeout": "1s"}


class FailingProbe(FakeProbe):
    """A FakeProbe whose probes of the relays ``failing(name, n)`` names fail (n counts that
    relay's probes from 0) with reason auth_failed."""

    def __init__(self, clock: VirtualClock, failing: Callable[[str, int], bool]) -> None:
        super().__init__(clock)
        self.failing = failing

    async def __call__(self, relay: RelayConfig, **kw: Any) -> RelayResult:
        n = len(self.starts[relay.name])
        result = await super().__call__(relay, **kw)
        if not self.failing(relay.name, n):
            return result
        return RelayResult(relay=relay.name, success=False, started_at=result.started_at,
                           duration=0.0, reason=Reason.AUTH_FAILED, detail="535 5.7.8 no")


@pytest.fixture
async def app_on(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts an App on a virtual clock with the given relays and probe; stops it after."""
    apps: list[App] = []

    async def start(relays: list[dict[str, Any]], probe: Any, clock: VirtualClock) -> App:
        path = write_config(tmp_path / "config.yaml", *relays)
        app = App(str(path), listen=("127.0.0.1", 0), environ=ENV, probe=probe, clock=clock)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


def summaries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "first round done"]


async def test_a_healthy_start_of_300_relays_logs_a_few_info_lines_and_one_summary(
    app_on: Callable[..., Any], caplog: pytest.LogCaptureFixture,
) -> None:
    """300 healthy relays (probes and DNS checks of their hosts): after the first round the
    info log holds "exporter started" and one summary saying all 300 are ok; the 300 probe
    results and DNS checks went to debug."""
    caplog.set_level(logging.DEBUG, logger="exporter")
    clock = VirtualClock()
    await app_on([relay(f"r{i}") for i in range(300)], FakeProbe(clock), clock)
    await clock.advance(60)
    await eventually(lambda: bool(summaries(caplog)), what="the first-round summary")
    messages = [r.getMessage() for r in loud(caplog)]
    assert messages == ["exporter started", "first round done"], messages
    (summary,) = summaries(caplog)
    assert summary.summary == "300 relays, 0 domains: all ok"  # type: ignore[attr-defined]
    assert summary.failing_relays == 0  # type: ignore[attr-defined]
    ok_lines = [r for r in caplog.records if r.getMessage() == "probe succeeded"]
    assert len(ok_lines) == 300 and all(r.levelno == logging.DEBUG for r in ok_lines)
    await clock.advance(120)  # two more healthy rounds: not one more info line
    assert [r.getMessage() for r in loud(caplog)] == messages


async def test_the_summary_names_the_failing_relays(
    app_on: Callable[..., Any], caplog: pytest.LogCaptureFixture,
) -> None:
    """Of 50 relays two fail their first probe: the summary counts them and names both, and
    each logs one warning."""
    caplog.set_level(logging.INFO, logger="exporter")
    clock = VirtualClock()
    probe = FailingProbe(clock, lambda name, _: name in ("r7", "r42"))
    await app_on([relay(f"r{i}") for i in range(50)], probe, clock)
    await clock.advance(60)
    await eventually(lambda: bool(summaries(caplog)), what="the first-round summary")
    (summary,) = summaries(caplog)
    assert summary.summary == "50 relays, 0 domains: 2 relays failing (r42, r7)"  # type: ignore[attr-defined]
    warnings = [r for r in loud(caplog) if r.levelno == logging.WARNING]
    assert sorted(r.relay for r in warnings) == ["r42", "r7"]  # type: ignore[attr-defined]


async def test_a_relay_failure_and_its_recovery_log_one_line_each(
    app_on: Callable[..., Any], caplog: pytest.LogCaptureFixture,
) -> None:
    """A relay whose probes 2 to 5 fail (auth_failed) logs one "probe failed" warning when it
    starts failing and one "relay recovered" line when it is back, not one per probe."""
    caplog.set_level(logging.INFO, logger="exporter.relay")
    clock = VirtualClock()
    probe = FailingProbe(clock, lambda _, n: 2 <= n <= 5)
    await app_on([relay("flaky")], probe, clock)
    await clock.advance(10 * 60)
    assert len(probe.starts["flaky"]) == 10
    lines = [(r.levelname, r.getMessage()) for r in loud(caplog)]
    assert lines == [("WARNING", "probe failed"), ("INFO", "relay recovered")]


def _report(status: CheckStatus) -> RelayDNSReport:
    message = "127.0.0.1 is listed" if status is not CheckStatus.OK else "not listed"
    check = DNSCheck(subject="r", check=CheckName.DNSBL, status=status, message=message,
                     selector="127.0.0.1", zone="zen.example")
    return RelayDNSReport(relay="r", host="mx.example", checked_at=time.time(), checks=(check,))


def test_a_dns_check_logs_its_problem_and_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A blocklist check ok, ok, listed, listed, listed, ok: the first ok is debug, the
    listing one warning, the delisting one info line."""
    caplog.set_level(logging.DEBUG, logger="exporter.dns")
    statuses = [CheckStatus.OK] * 2 + [CheckStatus.ERROR] * 3 + [CheckStatus.OK]
    previous: RelayDNSReport | None = None
    for status in statuses:
        report = _report(status)
        log_changes("r", report, previous)
        previous = report
    levels = [(r.levelname, r.status) for r in caplog.records]  # type: ignore[attr-defined]
    assert levels == [("DEBUG", "ok"), ("WARNING", "error"), ("INFO", "ok")]


async def test_canary_send_failures_log_one_warning_and_one_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Sends ok, failing three times with the same reason, then ok: one "canary send failed"
    warning and one "canary send recovered" line; a different reason warns again."""
    caplog.set_level(logging.DEBUG, logger="exporter.canary.manager")
    config = make_config(
        {**relay("r"), "canary": {"from": "c@example.test", "interval": "1h",
                                  "to": [{"address": "a@example.test", "mailbox": "box"}]}},
        state_dir=str(tmp_path / "state"),
        mailboxes=[{"name": "box", "host": "127.0.0.1", "port": 1, "tls": "implicit",
                    "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}])
    reasons = [None, Reason.TIMEOUT, Reason.TIMEOUT, Reason.TIMEOUT, None, Reason.TIMEOUT,
               Reason.AUTH_FAILED]

    async def send(relay: RelayConfig, _: object, *, token: str, **kw: Any) -> CanarySent:
        reason = reasons.pop(0)
        return CanarySent(relay=relay.name, token=token, success=reason is None,
                          started_at=time.time(), sent_at=time.time(), reason=reason)

    manager = CanaryManager(CanaryStore(), send=send)
    manager.first_spread = 1e9
    manager.apply(config)
    try:
        for _ in range(7):
            await manager.send_once(config.relays[0])
    finally:
        await manager.stop()
    lines = [(r.levelname, r.getMessage(), getattr(r, "reason", None))
             for r in caplog.records
             if r.name == "exporter.canary.manager" and r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", "canary send failed", "timeout"),
        ("INFO", "canary send recovered", None),
        ("WARNING", "canary send failed", "timeout"),
        ("WARNING", "canary send failed", "auth_failed"),
    ]


async def test_lost_canaries_log_one_warning_and_one_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Two canaries in a row lost, then one that arrives in time: one "canary lost" warning,
    one "canary delivery recovered" line; the second loss and the arrival are debug."""
    caplog.set_level(logging.DEBUG, logger="exporter.canary.manager")
    config = make_config(
        {**relay("r"), "canary": {"from": "c@example.test", "interval": "1h",
                                  "to": [{"address": "a@example.test", "mailbox": "box"}]}},
        state_dir=str(tmp_path / "state"),
        mailboxes=[{"name": "box", "host": "127.0.0.1", "port": 1, "tls": "implicit",
                    "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}])

    async def send(relay: RelayConfig, _: object, *, token: str, **kw: Any) -> CanarySent:
        return CanarySent(relay=relay.name, token=token, success=True, started_at=time.time(),
                          sent_at=time.time(), accepted=("a@example.test",))

    manager = CanaryManager(CanaryStore(), send=send)
    manager.first_spread = 1e9
    manager.apply(config)
    state = manager.state
    assert state is not None

    def lost() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "canary lost"]

    try:
        for n in (1, 2):  # sent, then past its deadline: the expiry sweep counts it lost
            sent = await manager.send_once(config.relays[0])
            record = state.get(sent.token, "box")
            assert record is not None
            state.update(replace(record, deadline=time.time() - 1))
            await eventually(lambda n=n: len(lost()) == n, what=f"loss {n}")  # type: ignore[misc]
        sent = await manager.send_once(config.relays[0])
        manager._on_arrival(Arrival(  # as the mailbox watcher reports it
            token=sent.token, mailbox="box", folder="inbox", folder_name="INBOX",
            seen_at=time.time(), internal_date=None, headers=()))
    finally:
        await manager.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "exporter.canary.manager"]
    assert lines == [("WARNING", "canary lost"), ("DEBUG", "canary lost"),
                     ("INFO", "canary delivery recovered"), ("DEBUG", "canary received")]


def test_the_summary_counts_dns_errors_and_names_at_most_ten() -> None:
    """12 relays with failed probes and one whose probe is ok but whose host is on a
    blocklist (an error): 13 failing, the first ten named, "and 3 more"; a domain with an
    SPF error is named, one with only a warning is not."""
    config = make_config(*(relay(f"r{i:02d}") for i in range(20)))
    store = ResultStore()
    store.configure(relay_infos(config), warnings=(), source="test")
    for i in range(20):
        store.record(RelayResult(relay=f"r{i:02d}", success=i >= 12, started_at=time.time(),
                                 duration=0.1, reason=None if i >= 12 else Reason.TIMEOUT))

    def domain(name: str, status: CheckStatus) -> DomainReport:
        check = DNSCheck(subject=name, check=CheckName.SPF, status=status, message="spf")
        return DomainReport(domain=name, checked_at=time.time(), checks=(check,))

    listed = replace(_report(CheckStatus.ERROR), relay="r19")
    dns = DNSSnapshot(domains={"bad.example": domain("bad.example", CheckStatus.ERROR),
                               "meh.example": domain("meh.example", CheckStatus.WARNING)},
                      relays={"r19": listed, "r18": replace(_report(CheckStatus.OK),
                                                            relay="r18")})
    fields = startup_summary(store.snapshot(), dns)
    assert fields["summary"] == (
        "20 relays, 2 domains: 13 relays failing (r00, r01, r02, r03, r04, r05, r06, r07, "
        "r08, r09 and 3 more); 1 domain failing DNS checks (bad.example)")
    assert (fields["failing_relays"], fields["failing_domains"]) == (13, 1)
