"""Faults around the probes: DNS that fails, a state directory that cannot be written, a
reload storm with invalid files, and half of 200 relays hanging."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import App
from exporter.dns.checks import DNSResolver, check_domain
from exporter.dns.result import CheckName, CheckStatus
from exporter.model import Phase, Reason
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from tests.conftest import ENV, make_relay
from tests.faults.leaks import count, settled
from tests.helpers import eventually, http, value
from tests.servers.dns import DNSServer
from tests.servers.loop import ServerLoop
from tests.servers.scripted import greeting_then, refused_port, start_scripted
from tests.servers.smtp import start_relay
from tests.tools import unavailable

# -- DNS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_dns(server_loop: ServerLoop) -> Iterator[DNSServer]:
    server = DNSServer(server_loop, {"ok.test": [("A", "127.0.0.1")]}, {"servfail.test"},
                       timeout={"silent.test"}, truncated={"truncated.test"})
    yield server
    server.close()


@pytest.mark.parametrize(("host", "detail"), [
    ("servfail.test", "servfail.test: SERVFAIL from every nameserver (asked {ns})"),
    ("silent.test", "silent.test: timeout after 2s: the resolver answers, but not for this "
                    "name (asked {ns})"),
    ("truncated.test", "truncated.test: truncated answer over UDP, and the retry over TCP "
                       "failed: Connection refused (asked {ns})"),
])
async def test_dns_faults_are_dns_errors_saying_which(
    faulty_dns: DNSServer, host: str, detail: str,
) -> None:
    """SERVFAIL, a nameserver that never answers and a truncated answer are dns_error in the
    resolve phase, each saying which, within the probe's timeout."""
    start = time.monotonic()
    result = await probe_relay(make_relay(host=host, port=25, tls="none", timeout="2s"),
                               nameservers=(("127.0.0.1", faulty_dns.port),))
    assert time.monotonic() - start < 2.6
    assert result.reason is Reason.DNS_ERROR
    assert result.failed_phase is Phase.RESOLVE
    assert result.detail is not None
    assert result.detail.startswith(detail.format(ns=f"127.0.0.1:{faulty_dns.port}"))


async def test_truncated_dns_answer_is_a_lookup_error_not_a_missing_record(
    faulty_dns: DNSServer,
) -> None:
    """A domain check whose answers come back truncated reports DNS errors, never "no SPF
    record" or "no DMARC record"."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", faulty_dns.port),), timeout=1.0)
    faulty_dns.protocol.truncated.update({"truncated.test", "_dmarc.truncated.test"})
    report = await check_domain("truncated.test", resolver=resolver, dkim_selectors=(),
                                expect_spf_includes=())
    by_check = {c.check: c for c in report.checks}
    for check in (CheckName.SPF, CheckName.DMARC):
        assert by_check[check].status is CheckStatus.ERROR
        assert by_check[check].message.startswith("DNS error looking up"), by_check[check]
        assert "no " not in by_check[check].message.split("(")[0]


# -- the state directory ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tiny tmpfs at ``path`` (root only): how a full or read-only disk really behaves."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def canary_config(path: Path, relay_port: int, state_dir: Path) -> Path:
    doc = {
        "instance": "faults", "state_dir": str(state_dir),
        "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                       "tls": "implicit", "trusted_authserv_ids": ["mx"],
                       "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}],
        "relays": [{"name": "relay", "host": "127.0.0.1", "port": relay_port, "tls": "none",
                    "interval": "1s", "timeout": "900ms",
                    "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                               "to": [{"address": "a@example.test", "mailbox": "box"}]}}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("options", "error"), [("ro,size=64k", "Read-only file system"),
                                                ("size=8k", "No space left on device")],
                         ids=["read-only", "full"])
async def test_unwritable_state_dir_is_reported_and_probing_goes_on(
    tmp_path: Path, server_loop: ServerLoop, options: str, error: str,
) -> None:
    """With the state directory read-only or full, canaries are still sent and watched in
    memory, the write errors are counted and shown, and relay probes keep running."""
    relay = start_relay(server_loop, ctx=None, starttls=False)
    with tmpfs(tmp_path / "state", options) as state:
        if "ro" not in options:
            filler = state / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as fh:
                while True:
                    fh.write(b"x" * 4096)
                    fh.flush()
        app = App(str(canary_config(tmp_path / "c.yaml", relay.port, state)),
                  listen=("127.0.0.1", 0), environ=ENV)
        app.canaries.first_spread = 1e9
        await app.start()
        try:
            assert app.config is not None
            sent = await app.canaries.send_once(app.config.relays[0])
            assert sent.success, sent
            assert app.canaries.state is not None
            assert len(app.canaries.state.in_flight()) == 1
            assert app.web is not None
            base = f"http://127.0.0.1:{app.web.port}"
            await eventually(lambda: app.store.snapshot().relays["relay"].probes >= 2, timeout=8)
            text = (await asyncio.to_thread(http, base + "/metrics"))[1]
            assert (value(text, "smtp_canary_state_write_errors_total") or 0) >= 1
            assert value(text, "smtp_probe_success", relay="relay") == 1
            page = (await asyncio.to_thread(http, base + "/"))[1]
            assert "Canary state not saved" in page and error in page
        finally:
            await app.stop()


# -- reloads ----------------------------------------------------------------------------------


async def test_hundred_reloads_half_invalid(tmp_path: Path) -> None:
    """100 reloads alternating between valid configs (relays come and go) and invalid ones:
    the running config is always the last valid one, /metrics never shows a removed relay,
    and the number of tasks stays that of the relays."""
    path = tmp_path / "c.yaml"
    port = refused_port()

    def valid(i: int) -> list[str]:
        return [f"r{i}-{k}" for k in range(1 + i % 3)]

    def write(names: list[str]) -> None:
        path.write_text(yaml.safe_dump({"relays": [
            {"name": n, "host": "127.0.0.1", "port": port, "tls": "none", "interval": "1h"}
            for n in names]}))

    write(valid(0))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    await app.start()
    assert app.web is not None
    base = f"http://127.0.0.1:{app.web.port}"
    await asyncio.sleep(0.1)
    per_relay = 2  # its probe loop and its DNS check loop
    baseline = count().tasks - per_relay * len(valid(0))
    running = valid(0)
    removed: set[str] = set()
    try:
        for i in range(1, 101):
            if i % 2:
                path.write_text(["relays: [", "relays:\n  - name: x\n    port: 99999\n",
                                 "relays: []\n", "\x00", "instance: [1]\nrelays: 3\n"][i % 5])
                ok, _ = await app.reload()
                assert not ok
            else:
                names = valid(i)
                write(names)
                ok, message = await app.reload()
                assert ok, message
                removed |= set(running) - set(names)
                running = names
            assert app.config is not None
            assert [r.name for r in app.config.relays] == running
            assert app.scheduler.relays == sorted(running)
            want = baseline + per_relay * len(running)
            await eventually(lambda want=want: count().tasks == want, timeout=2,  # type: ignore[misc]
                             interval=0.01)
            if i % 10 == 0:
                text = (await asyncio.to_thread(http, base + "/metrics"))[1]
                shown = {line.split('relay="')[1].split('"')[0] for line in text.splitlines()
                         if line.startswith("smtp_probe_success{")}
                assert shown == set(running)
                assert not shown & removed
        text = (await asyncio.to_thread(http, base + "/metrics"))[1]
        assert value(text, "smtp_exporter_config_last_reload_successful") == 1
    finally:
        await app.stop()


# -- 200 relays, half hanging -----------------------------------------------------------------


async def test_200_relays_half_hanging_the_healthy_half_keeps_its_schedule(
    tmp_path: Path, server_loop: ServerLoop,
) -> None:
    """100 relays that accept and never greet (each hangs for its whole timeout) and 100
    healthy ones: every healthy relay is probed about once per interval, with usual timings."""
    async def hang_until_closed(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read()  # never a greeting; the server's socket closes when the client's does

    hang = start_scripted(server_loop, hang_until_closed)
    ok = start_scripted(server_loop, greeting_then(b"220 ok.example.test ESMTP\r\n"))
    relays = [{"name": f"hang{i:03d}", "host": "127.0.0.1", "port": hang, "tls": "none",
               "interval": "4s", "timeout": "3s"} for i in range(100)]
    relays += [{"name": f"ok{i:03d}", "host": "127.0.0.1", "port": ok, "tls": "none",
                "interval": "2s", "timeout": "1s"} for i in range(100)]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"relays": relays}))
    before = count()
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    await app.start()
    try:
        await asyncio.sleep(16)
        snap = app.store.snapshot()
    finally:
        await app.stop()
    healthy = {n: v for n, v in snap.relays.items() if n.startswith("ok")}
    hanging = {n: v for n, v in snap.relays.items() if n.startswith("hang")}
    # 16 s with a first start spread over 2 s and a 2 s interval: at least 6 probes each
    probes = sorted(v.probes for v in healthy.values())
    assert probes[0] >= 6, probes[:10]
    assert all(v.last is not None and v.last.success for v in healthy.values())
    greeting = sorted(v.last.phases[Phase.GREETING] for v in healthy.values()
                      if v.last is not None)
    assert greeting[len(greeting) // 2] < 0.05, greeting[-5:]
    assert all(v.last is not None and v.last.reason is Reason.GREETING_TIMEOUT
               for v in hanging.values() if v.probes)
    assert sum(1 for v in hanging.values() if v.probes) >= 90
    after = await settled(before)
    assert after.fds <= before.fds and after.threads <= before.threads, (before, after)


# -- stopping while a cancellation is swallowed ------------------------------------------------


async def test_stop_ends_a_probe_that_swallowed_its_cancellation(tmp_path: Path) -> None:
    """A probe that swallows the cancel, as asyncio.wait_for does in Python 3.11 when the
    server's reply arrives at the same moment, does not keep the exporter from stopping (it
    hung forever: the loop went on to sleep until its next run)."""
    started = asyncio.Event()

    async def swallowing_probe(relay: Any, **_: Any) -> RelayResult:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)
        return RelayResult(relay=relay.name, success=True, started_at=time.time(),
                           duration=0.5)

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"relays": [
        {"name": "r", "host": "127.0.0.1", "port": 25, "tls": "none", "interval": "1s",
         "timeout": "900ms"}]}))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV, probe=swallowing_probe)
    await app.start()
    await asyncio.wait_for(started.wait(), 5)
    start = time.monotonic()
    await asyncio.wait_for(app.stop(), 10)
    assert time.monotonic() - start < 3
