"""SMTP faults injected by a proxy between the prober and a real aiosmtpd relay: each gives
its reason in the right phase, a healthy relay probed alongside keeps its timings, and
nothing leaks."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import App
from exporter.canary.send import send_canary
from exporter.config import CanaryConfig
from exporter.model import Phase, Reason
from exporter.relay.probe import probe_relay
from tests.conftest import ENV, auth, make_config
from tests.faults.leaks import count, settled
from tests.faults.proxy import Fault, FaultProxy
from tests.helpers import http
from tests.servers.loop import ServerLoop
from tests.servers.smtp import PASSWORD, Relay, start_relay

EHLO_1000 = b"".join(b"250-X-EXTENSION-%04d some text\r\n" % i for i in range(999)) + (
    b"250 AUTH PLAIN LOGIN\r\n")


@dataclass(frozen=True)
class Case:
    fault: Fault
    tls: str  # starttls (proxy sees only the handshake) or none (proxy sees AUTH and DATA)
    reason: Reason | None  # None: the probe succeeds despite the fault
    phase: Phase | None
    detail: str = ""  # a fragment of the detail
    canary: bool = False  # DATA faults need a real send


CASES: dict[str, Case] = {
    "reset-in-greeting": Case(Fault("reset", keep=10), "starttls", Reason.PROTOCOL_ERROR,
                              Phase.GREETING, "closed the connection before greeting"),
    "reset-in-tls-handshake": Case(Fault("reset", trigger=b"STARTTLS", on="client"),
                                   "starttls", Reason.TLS_HANDSHAKE_FAILED, Phase.TLS),
    "reset-in-auth": Case(Fault("reset", trigger=b"AUTH"), "none", Reason.PROTOCOL_ERROR,
                          Phase.AUTH, "closed the connection after AUTH"),
    "reset-in-data": Case(Fault("reset", trigger=b"DATA", on="client"), "none",
                          Reason.PROTOCOL_ERROR, Phase.DATA, "after the message", canary=True),
    "half-open-after-ehlo": Case(Fault("hang", trigger=b"EHLO"), "starttls", Reason.TIMEOUT,
                                 Phase.EHLO, "no reply to EHLO"),
    "half-open-in-data": Case(Fault("hang", trigger=b"DATA", on="client"), "none",
                              Reason.TIMEOUT, Phase.DATA, "no reply to the message", canary=True),
    "slowloris-ehlo": Case(Fault("slow", trigger=b"EHLO", slow_interval=1.0), "starttls",
                           Reason.TIMEOUT, Phase.EHLO),
    "greeting-1mb-line": Case(Fault("replace", payload=b"220 " + b"x" * 1_000_000 + b"\r\n"),
                              "starttls", Reason.PROTOCOL_ERROR, Phase.GREETING,
                              "Response too long"),
    "reply-without-crlf": Case(Fault("replace", trigger=b"EHLO", payload=b"250 relay ready"),
                               "starttls", Reason.TIMEOUT, Phase.EHLO, "no reply to EHLO"),
    "greeting-invalid-utf8": Case(Fault("replace", payload=b"220 relay \xff\xfe\xc3( ready\r\n"),
                                  "starttls", None, None),
    "ehlo-1000-lines": Case(Fault("replace", trigger=b"EHLO", payload=EHLO_1000), "none",
                            None, None),
}


@pytest.fixture(scope="module")
def relay(server_loop: ServerLoop, server_ctx: ssl.SSLContext) -> Relay:
    """One real relay for every case: STARTTLS offered, AUTH allowed without it too."""
    return start_relay(server_loop, ctx=server_ctx, auth_require_tls=False)


@pytest.fixture
def proxies(server_loop: ServerLoop) -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def relay_doc(name: str, port: int, case: Case, ca_file: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "host": "127.0.0.1", "port": port, "tls": case.tls,
                           "timeout": "2s", "interval": "10s", "auth": auth("plain")}
    if case.tls == "none":
        doc["allow_plaintext_auth"] = True
    else:
        doc["ca_file"] = ca_file
    if case.canary:
        doc["canary"] = {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                         "to": [{"address": "a@example.test", "mailbox": "box"}]}
    return doc


MAILBOX = {"name": "box", "host": "127.0.0.1", "port": 1, "tls": "implicit",
           "trusted_authserv_ids": ["mx"],
           "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_gives_its_reason_in_its_phase(
    name: str, server_loop: ServerLoop, relay: Relay, ca_file: str,
    proxies: list[FaultProxy],
) -> None:
    """The fault is reported with its reason and phase, within the probe timeout, with a
    one-line detail and no password."""
    case = CASES[name]
    proxy = FaultProxy(server_loop, relay.port, case.fault)
    proxies.append(proxy)
    doc = relay_doc(name, proxy.port, case, ca_file)
    top: dict[str, Any] = {"mailboxes": [MAILBOX]} if case.canary else {}
    config = make_config(doc, **top)
    relay_config = config.relays[0]
    start = time.monotonic()
    if case.canary:
        canary: CanaryConfig | None = relay_config.canary
        assert canary is not None
        result: Any = await send_canary(relay_config, canary, instance="faults")
    else:
        result = await probe_relay(relay_config)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0 + 3.5, elapsed  # the timeout, plus a TLS re-test at most
    assert result.reason is case.reason, result
    assert result.failed_phase is case.phase
    if case.reason is not None:
        assert result.detail is not None and case.detail in result.detail
        assert "\n" not in result.detail
    if case.canary:
        assert result.uncertain  # the message was handed over; it is still watched for
    assert PASSWORD not in repr(result)
    assert proxy.connections >= 1


async def test_invalid_utf8_greeting_reaches_every_output(
    server_loop: ServerLoop, relay: Relay, ca_file: str, proxies: list[FaultProxy],
    tmp_path: Path,
) -> None:
    """A refusal with bytes that are not UTF-8 is rejected_permanent with the reply kept, and
    the status page, /status.json, /metrics and the log line still render it."""
    case = CASES["greeting-invalid-utf8"]
    proxy = FaultProxy(server_loop, relay.port, Fault(
        "replace", payload=b"554 relay \xff\xfe\xc3( go away\r\n"))
    proxies.append(proxy)
    doc = relay_doc("utf8", proxy.port, case, ca_file)
    doc["auth"] = auth("plain")
    doc["interval"] = "1h"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"relays": [doc]}))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    await app.start()
    try:
        assert app.config is not None
        result = await probe_relay(app.config.relays[0])
        app.store.record(result)
        assert result.reason is Reason.REJECTED_PERMANENT, result
        assert result.reply is not None and result.reply.startswith("554 relay")
        assert app.web is not None
        base = f"http://127.0.0.1:{app.web.port}"
        for path_ in ("/", "/status.json", "/metrics"):
            status, body, _ = await asyncio.to_thread(http, base + path_)
            assert status == 200, (path_, body[:200])
        page = (await asyncio.to_thread(http, base + "/"))[1]
        assert "554 relay" in page and "go away" in page
        status_json = (await asyncio.to_thread(http, base + "/status.json"))[1]
        assert "554 relay" in status_json
    finally:
        await app.stop()


async def test_faults_leave_a_healthy_relay_alone_and_leak_nothing(
    server_loop: ServerLoop, relay: Relay, ca_file: str, proxies: list[FaultProxy],
    tmp_path: Path,
) -> None:
    """Every fault at once in one exporter, next to a healthy relay: the healthy relay's
    probes all succeed with their usual timings, and after stopping, tasks, threads and file
    descriptors are back where they were."""
    docs = []
    for name, case in CASES.items():
        if case.canary:
            continue
        proxy = FaultProxy(server_loop, relay.port, case.fault)
        proxies.append(proxy)
        docs.append({**relay_doc(name, proxy.port, case, ca_file), "interval": "3s"})
    docs.append({"name": "healthy", "host": "127.0.0.1", "port": relay.port, "tls": "starttls",
                 "ca_file": ca_file, "timeout": "900ms", "interval": "1s", "auth": auth("plain")})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"relays": docs}))
    await asyncio.sleep(0.2)
    before = count()
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    seen: list[Any] = []
    original = app.store.record

    def record(result: Any) -> None:
        seen.append(result)
        original(result)

    app.store.record = record  # type: ignore[method-assign]
    await app.start()
    try:
        await asyncio.sleep(9)
    finally:
        await app.stop()
    healthy = [r for r in seen if r.relay == "healthy"]
    assert len(healthy) >= 5
    assert all(r.success for r in healthy), [r.detail for r in healthy if not r.success]
    for phase in (Phase.GREETING, Phase.EHLO, Phase.AUTH):
        worst = max(r.phases[phase] for r in healthy)
        assert worst < 0.15, (phase, worst)
    reasons = {r.relay: r.reason for r in seen if r.relay != "healthy"}
    for name, case in CASES.items():
        if not case.canary:
            assert name in reasons and reasons[name] is case.reason, (name, reasons.get(name))
    after = await settled(before)
    assert after.tasks <= before.tasks, f"before {before}, after {after}"
    assert after.threads <= before.threads, f"before {before}, after {after}"
    assert after.fds <= before.fds, f"before {before}, after {after}"


@pytest.mark.parametrize(("trigger", "phase"), [(None, Phase.GREETING), (b"EHLO", Phase.EHLO),
                                                 (b"AUTH", Phase.AUTH)])
async def test_added_latency_lands_in_its_phase(
    server_loop: ServerLoop, relay: Relay, proxies: list[FaultProxy],
    trigger: bytes | None, phase: Phase,
) -> None:
    """300 ms (+ up to 100 ms jitter) added to one reply shows in that phase only."""
    proxy = FaultProxy(server_loop, relay.port, Fault("delay", trigger=trigger, delay=0.3,
                                                      jitter=0.1))
    proxies.append(proxy)
    config = make_config({"name": "slow", "port": proxy.port, "tls": "none",
                          "allow_plaintext_auth": True, "auth": auth("plain")})
    result = await probe_relay(config.relays[0])
    assert result.success, result
    assert 0.3 <= result.phases[phase] < 0.5, result.phases
    for other in (Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.AUTH, Phase.QUIT):
        if other is not phase:
            assert result.phases[other] < 0.1, (other, result.phases)
