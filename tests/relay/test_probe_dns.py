"""dns_error says what happened, which resolver was asked and the fix; dns.timeout bounds the
relay-host lookup, against real DNS servers on loopback and a closed UDP port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.app import relay_infos
from exporter.model import Phase, Reason
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from exporter.relay.scheduler import Scheduler
from exporter.relay.store import ResultStore
from tests.clock import VirtualClock
from tests.conftest import make_config, make_relay, write_config
from tests.servers.dns import DNSServer
from tests.servers.loop import ServerLoop
from tests.test_cli import run_cli


def closed_udp_port() -> int:
    """A loopback UDP port nothing listens on: a nameserver that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def dns_server(server_loop: ServerLoop) -> Iterator[DNSServer]:
    server = DNSServer(server_loop, {"ok.test": [("A", "127.0.0.1")]}, {"broken.test"},
                       timeout={"silent.test"})
    yield server
    server.close()


async def _probe(host: str, port: int, *, dns_timeout: float | None = None) -> RelayResult:
    relay = make_relay(host=host, port=25, tls="none", timeout="10s", interval="60s")
    return await probe_relay(relay, nameservers=(("127.0.0.1", port),), dns_timeout=dns_timeout)


async def test_nxdomain_names_the_case_the_resolver_and_the_fix(dns_server: DNSServer) -> None:
    """A name the nameserver does not know is dns_error saying NXDOMAIN, the nameserver asked
    and to check the host name."""
    result = await _probe("missing.test", dns_server.port)
    assert result.reason is Reason.DNS_ERROR
    assert result.failed_phase is Phase.RESOLVE
    assert result.detail == (f"missing.test: NXDOMAIN, the name does not exist (asked "
                             f"127.0.0.1:{dns_server.port}); check the relay's host name")


async def test_servfail_names_the_case_and_the_resolver(dns_server: DNSServer) -> None:
    """SERVFAIL is dns_error saying SERVFAIL and the nameserver asked."""
    result = await _probe("broken.test", dns_server.port)
    assert result.reason is Reason.DNS_ERROR
    assert result.detail == (
        f"broken.test: SERVFAIL from every nameserver (asked 127.0.0.1:{dns_server.port}); "
        "the name's nameservers are failing, or the resolver cannot reach them: check the "
        "host's DNS")


async def test_a_name_the_resolver_never_answers_times_out_within_dns_timeout(
    dns_server: DNSServer,
) -> None:
    """A live nameserver silent about one name: with dns.timeout 1s and a 10s probe timeout,
    the probe fails in under 2.5 s, saying timeout and that the resolver itself answers."""
    start = time.monotonic()
    result = await _probe("silent.test", dns_server.port, dns_timeout=1.0)
    assert time.monotonic() - start < 2.5
    assert result.reason is Reason.DNS_ERROR
    assert result.detail == (
        f"silent.test: timeout after 1s: the resolver answers, but not for this name (asked "
        f"127.0.0.1:{dns_server.port}); the name's nameservers do not answer: check the "
        "host's DNS")


async def test_a_dead_resolver_is_no_nameserver_answered_within_dns_timeout() -> None:
    """A configured nameserver that is down: with dns.timeout 1s and a 10s probe timeout, the
    probe fails in under 2.5 s with "no nameserver answered", the nameserver and the fix."""
    port = closed_udp_port()
    start = time.monotonic()
    result = await _probe("relay.test", port, dns_timeout=1.0)
    assert time.monotonic() - start < 2.5
    assert result.reason is Reason.DNS_ERROR
    assert result.failed_phase is Phase.RESOLVE
    assert result.detail == (f"relay.test: no nameserver answered within 1s (asked "
                             f"127.0.0.1:{port}); check dns.nameservers or the network")


async def test_the_scheduler_applies_dns_timeout_to_its_probes() -> None:
    """The daemon's probes use dns.timeout: a dead nameserver with dns.timeout 1s fails a
    probe whose timeout is 10s in under 2.5 s."""
    port = closed_udp_port()
    config = make_config(
        {"name": "r", "host": "relay.test", "port": 25, "tls": "none", "timeout": "10s",
         "interval": "60s"},
        dns={"nameservers": [f"127.0.0.1:{port}"], "timeout": "1s"},
    )
    store, clock = ResultStore(), VirtualClock()
    scheduler = Scheduler(store, clock=clock)
    store.configure(relay_infos(config), warnings=(), source="test")
    scheduler.apply(config)
    try:
        await clock.advance(61)  # the first probe starts; it runs in real time
        for _ in range(100):
            last = store.snapshot().relays.get("r")
            if last is not None and last.last is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert last is not None and last.last is not None
    assert last.last.reason is Reason.DNS_ERROR
    assert last.last.duration < 2.5
    assert last.last.detail is not None
    assert "no nameserver answered within 1s" in last.last.detail


def test_probe_command_prints_what_happened_to_the_lookup(tmp_path: Path) -> None:
    """`probe` against a dead nameserver with dns.timeout 1s and a 10s probe timeout exits 1
    within the DNS timeout, printing dns_error, the hint and the detail with the fix."""
    port = closed_udp_port()
    cfg = write_config(
        tmp_path / "c.yaml",
        {"name": "mx", "host": "relay.test", "port": 25, "tls": "none", "timeout": "10s",
         "interval": "60s"},
        dns={"nameservers": [f"127.0.0.1:{port}"], "timeout": "1s"},
    )
    start = time.monotonic()
    out = run_cli("probe", "--config.file", str(cfg), "--no-dns")
    assert time.monotonic() - start < 8  # the process starts in ~1 s; the probe would take 10
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert "mx: FAIL dns_error" in lines
    assert "  phase: resolve" in lines
    assert ("  hint: the relay host name does not resolve: check host and the DNS resolver"
            in lines)
    assert (f"  detail: relay.test: no nameserver answered within 1s (asked 127.0.0.1:{port}); "
            "check dns.nameservers or the network") in lines
