"""The demo's authoritative DNS server: its answers, and the DNS checks run against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import dns.flags
import dns.nameserver
import dns.resolver
import pytest

from exporter.config import load_config
from exporter.demo.dns import BLOCKLIST, TTL, DemoDNS
from exporter.demo.run import (
    IMAP_PASSWORD_ENV,
    PASSWORD_ENV,
    REFRESH_TOKEN_ENV,
    WRONG_PASSWORD_ENV,
    DemoRelay,
    write_demo_config,
)
from exporter.dns.checks import DNSResolver, check_domain, check_relay_host
from exporter.dns.result import CheckStatus, DomainReport


@pytest.fixture
async def server() -> AsyncIterator[DemoDNS]:
    dns_server = DemoDNS()
    await dns_server.start()
    try:
        yield dns_server
    finally:
        await dns_server.stop()


def _resolver(server: DemoDNS) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", server.port)]
    resolver.lifetime = 2.0
    return resolver


def _statuses(report: DomainReport) -> dict[tuple[str, str | None], CheckStatus]:
    return {(c.check, c.selector): c.status for c in report.checks}


async def test_answers_are_authoritative_with_ttl_60(server: DemoDNS) -> None:
    """MX, A and TXT come back authoritative with TTL 60, the DKIM key in 255-byte strings."""
    resolver = _resolver(server)
    mx = await resolver.resolve("demo.localhost", "MX")
    assert mx.response.flags & dns.flags.AA
    assert mx.rrset is not None and mx.rrset.ttl == TTL
    assert [r.to_text() for r in mx] == ["10 mx.demo.localhost."]
    a = await resolver.resolve("mx.demo.localhost", "A")
    assert [r.to_text() for r in a] == ["127.0.0.1"]
    relay = await resolver.resolve("relay.demo.localhost", "A")
    assert [r.to_text() for r in relay] == ["127.0.0.1"]
    dkim = await resolver.resolve("demo._domainkey.demo.localhost", "TXT")
    strings = dkim[0].strings
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert b"".join(strings).startswith(b"v=DKIM1; k=rsa; p=")


async def test_unknown_names_are_nxdomain(server: DemoDNS) -> None:
    """A name the server does not know is NXDOMAIN; a known name without the type is no data."""
    resolver = _resolver(server)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nothing.demo.localhost", "A")
    answer = await resolver.resolve("demo.localhost", "AAAA", raise_on_no_answer=False)
    assert answer.rrset is None and answer.response.flags & dns.flags.AA


async def test_demo_domain_checks_ok(server: DemoDNS) -> None:
    """Every check of demo.localhost reads ok: MX, SPF, a 2048-bit DKIM key, DMARC quarantine,
    MTA-STS and TLS-RPT."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", server.port),), timeout=2.0)
    report = await check_domain("demo.localhost", resolver=resolver, dkim_selectors=["demo"])
    assert _statuses(report) == {
        ("mx", None): CheckStatus.OK, ("spf", None): CheckStatus.OK,
        ("dkim", "demo"): CheckStatus.OK, ("dmarc", None): CheckStatus.OK,
        ("mta_sts", None): CheckStatus.OK, ("tls_rpt", None): CheckStatus.OK,
    }, report.checks
    assert report.dkim_key_bits == {"demo": 2048}
    assert report.dmarc_policy == "quarantine"


async def test_weak_domain_shows_findings(server: DemoDNS) -> None:
    """weak.localhost fails SPF (+all) and DMARC (missing) and warns on its 1024-bit DKIM key."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", server.port),), timeout=2.0)
    report = await check_domain("weak.localhost", resolver=resolver, dkim_selectors=["old"])
    status = _statuses(report)
    assert status[("spf", None)] is CheckStatus.ERROR
    assert status[("dmarc", None)] is CheckStatus.ERROR
    assert status[("dkim", "old")] is CheckStatus.WARNING
    assert status[("mx", None)] is CheckStatus.OK
    assert report.dkim_key_bits == {"old": 1024}
    spf = next(c for c in report.checks if c.check == "spf")
    assert "+all" in spf.message


async def test_relay_host_resolves_to_loopback(server: DemoDNS) -> None:
    """The demo relays' host resolves to 127.0.0.1, where reverse DNS and blocklists are
    skipped."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", server.port),), timeout=2.0)
    report = await check_relay_host("demo-starttls", "localhost", resolver=resolver,
                                    blocklists=["zen.example.org"])
    assert [(c.check, c.status) for c in report.checks] == [("address", CheckStatus.OK)]
    assert report.addresses == ("127.0.0.1",)


async def test_demo_config_points_at_the_demo_dns(tmp_path: Path) -> None:
    """The demo config loads, with the demo DNS server as nameserver and both domains."""
    relay = DemoRelay(tmp_path)
    await relay.start()
    try:
        path = tmp_path / "config.yaml"
        write_demo_config(relay, path, interval=2.0)
        env = dict.fromkeys((PASSWORD_ENV, WRONG_PASSWORD_ENV, IMAP_PASSWORD_ENV,
                             REFRESH_TOKEN_ENV), "x")
        config = load_config(path, environ=env)
    finally:
        await relay.stop()
    assert config.dns.nameservers == (("127.0.0.1", relay.dns.port),)
    assert config.dns.interval == 10.0 and config.dns.timeout == 2.0
    assert [(d.name, d.dkim_selectors) for d in config.domains] == [
        ("demo.localhost", ("demo",)), ("weak.localhost", ("old",))]
    assert config.blocklists == (BLOCKLIST,)
    egress = {r.name: r.egress_addresses for r in config.relays if r.egress_addresses}
    assert egress == {"demo-starttls": ("127.0.0.10",), "demo-implicit": ("127.0.0.2",)}


async def test_demo_egress_addresses_one_clean_one_listed(server: DemoDNS) -> None:
    """127.0.0.10 has forward-confirmed reverse DNS and is not listed; 127.0.0.2, the
    blocklist test entry, is listed and its PTR name does not resolve back."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", server.port),), timeout=2.0)
    clean = await check_relay_host("demo-starttls", "localhost", resolver=resolver,
                                   blocklists=[BLOCKLIST], egress=["127.0.0.10"])
    assert clean.ptr_matches == {"127.0.0.10": True}
    assert clean.listed == {("127.0.0.10", BLOCKLIST): False}
    assert all(c.status is CheckStatus.OK for c in clean.checks), clean.checks
    bad = await check_relay_host("demo-implicit", "localhost", resolver=resolver,
                                 blocklists=[BLOCKLIST], egress=["127.0.0.2"])
    assert bad.ptr_matches == {"127.0.0.2": False}
    assert bad.listed == {("127.0.0.2", BLOCKLIST): True}
    assert {c.check: c.status for c in bad.checks} == {
        "address": CheckStatus.OK, "ptr": CheckStatus.ERROR, "dnsbl": CheckStatus.ERROR}
