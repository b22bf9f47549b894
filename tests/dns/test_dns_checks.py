"""DNS checks of domains and relays against a real DNS server on loopback serving test zones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.dns.checks import DNSResolver, check_domain, check_relay_host
from exporter.dns.result import CheckName, CheckStatus, DNSCheck, DomainReport
from tests.servers.dns import DNSServer
from tests.servers.loop import ServerLoop
from tests.servers.zones import SERVFAIL, TIMEOUT, zones

OK, WARNING, ERROR = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.ERROR
NO_DMARC = "no DMARC record at _dmarc.{}; publish v=DMARC1; p=none; rua=mailto:... to start"


@pytest.fixture(scope="module")
def dns_server(server_loop: ServerLoop) -> Iterator[DNSServer]:
    server = DNSServer(server_loop, zones(), set(SERVFAIL), timeout=set(TIMEOUT))
    yield server
    server.close()


@pytest.fixture
def resolver(dns_server: DNSServer) -> DNSResolver:
    return DNSResolver(nameservers=(("127.0.0.1", dns_server.port),), timeout=0.5)


def _check(report: DomainReport, check: CheckName, selector: str | None = None) -> DNSCheck:
    return next(c for c in report.checks if c.check == check and c.selector == selector)


async def test_good_domain_passes_every_check(resolver: DNSResolver) -> None:
    """A domain with every record right is ok everywhere, with its figures in the report."""
    report = await check_domain("good.test", resolver=resolver,
                                dkim_selectors=("s2048", "ed", "pkcs1"),
                                expect_spf_includes=("_spf.provider.test",))
    assert {(c.check, c.selector): (c.status, c.message) for c in report.checks} == {
        (CheckName.MX, None): (OK, "one MX host, each resolves"),
        (CheckName.SPF, None): (OK, "one SPF record, 3 of 10 DNS lookups, ends in ~all"),
        (CheckName.DKIM, "s2048"): (OK, "DKIM key for selector s2048 is 2048-bit RSA"),
        (CheckName.DKIM, "ed"): (OK, "DKIM key for selector ed is ed25519"),
        (CheckName.DKIM, "pkcs1"): (OK, "DKIM key for selector pkcs1 is 2048-bit RSA"),
        (CheckName.DMARC, None): (OK, "DMARC p=reject, reports to mailto:dmarc@good.test"),
        (CheckName.MTA_STS, None): (OK, "MTA-STS record id=20240101T000000"),
        (CheckName.TLS_RPT, None): (OK, "TLS-RPT reports to mailto:tls@good.test"),
    }
    assert report.spf_lookups == 3
    assert report.dkim_key_bits == {"s2048": 2048, "ed": 256, "pkcs1": 2048}
    assert (report.dmarc_policy, report.dmarc_subdomain_policy, report.dmarc_pct) == (
        "reject", "reject", 100)
    assert all(c.subject == "good.test" and c.duration >= 0 for c in report.checks)


@pytest.mark.parametrize(("domain", "expect", "status", "message"), [
    ("twospf.test", (), ERROR, "two v=spf1 records; merge them into one"),
    ("deep.test", (), ERROR,
     "SPF needs 11 DNS lookups (limit 10): flatten includes or remove unused ones"),
    ("plusall.test", (), ERROR,
     "SPF ends in +all: anyone may send as this domain; use ~all or -all"),
    ("spfsyntax.test", (), ERROR,
     "SPF syntax error: bad ip4 network 'ip4:192.0.2.300'; fix the record"),
    ("void.test", (), ERROR,
     "SPF has 3 void lookups (limit 2): gone1.void.test, gone2.void.test, gone3.void.test; "
     "remove terms for names that do not exist"),
    ("good.test", ("_spf.google.com",), ERROR,
     "SPF lacks include:_spf.google.com; add it, or mail sent through that provider fails SPF"),
    ("loop.test", (), ERROR, "SPF include loop through include:loop.test; remove the loop"),
    ("badinclude.test", (), ERROR,
     "include:missing.provider.test has no SPF record; fix or remove the include"),
    ("redirect.test", (), OK, "one SPF record, 1 of 10 DNS lookups, ends in -all"),
    ("nomx.test", (), ERROR,
     "no SPF record at nomx.test; publish one such as v=spf1 include:<your provider> -all"),
    ("servfail.test", (), ERROR,
     "SERVFAIL looking up servfail.test; the domain's nameservers are failing"),
])
async def test_spf(resolver: DNSResolver, domain: str, expect: tuple[str, ...],
                   status: CheckStatus, message: str) -> None:
    """Each broken SPF record yields its status and a message naming the fix."""
    report = await check_domain(domain, resolver=resolver, expect_spf_includes=expect)
    spf = _check(report, CheckName.SPF)
    assert (spf.status, spf.message) == (status, message)


async def test_spf_lookup_count_is_reported(resolver: DNSResolver) -> None:
    """The lookup total through nested includes is in the report, 11 for the deep tree."""
    assert (await check_domain("deep.test", resolver=resolver)).spf_lookups == 11
    assert (await check_domain("twospf.test", resolver=resolver)).spf_lookups is None


@pytest.mark.parametrize(("selector", "status", "message", "bits"), [
    ("s512", ERROR, "DKIM key for selector s512 is 512-bit RSA: broken; publish a 2048-bit key",
     512),
    ("s1024", WARNING,
     "DKIM key for selector s1024 is 1024-bit RSA: weak; publish a 2048-bit key", 1024),
    ("revoked", ERROR, "DKIM key for selector revoked is revoked (empty p=); sign with another "
     "selector or remove it from the config", None),
    ("junk", ERROR, "DKIM key for selector junk does not parse: p= does not hold a DER RSA "
     "public key; republish the key", None),
    ("missing", ERROR, "no DKIM key at missing._domainkey.keys.test; publish the selector's "
     "public key or remove the selector from the config", None),
])
async def test_dkim(resolver: DNSResolver, selector: str, status: CheckStatus, message: str,
                   bits: int | None) -> None:
    """Broken, weak, revoked, unparseable and missing DKIM keys each say what to publish."""
    report = await check_domain("keys.test", resolver=resolver, dkim_selectors=(selector,))
    dkim = _check(report, CheckName.DKIM, selector)
    assert (dkim.status, dkim.message) == (status, message)
    assert report.dkim_key_bits.get(selector) == bits


@pytest.mark.parametrize(("domain", "status", "message", "policy"), [
    ("nomx.test", ERROR, NO_DMARC.format("nomx.test"), None),
    ("pnone.test", WARNING, "DMARC p=none only monitors; move to quarantine or reject once "
     "reports are clean", "none"),
    ("dmarcsyntax.test", ERROR, "DMARC syntax error at _dmarc.dmarcsyntax.test: p=block is not "
     "none, quarantine or reject; fix the record", None),
    ("mail.parent.test", OK,
     "DMARC inherited from parent.test: sp=quarantine, reports to mailto:d@parent.test",
     "quarantine"),
    ("sub.good.test", OK,
     "DMARC inherited from good.test: p=reject, reports to mailto:dmarc@good.test", "reject"),
    ("pct.test", WARNING, "DMARC pct=50 applies p=quarantine to part of the mail only; raise "
     "pct to 100", "quarantine"),
    ("norua.test", WARNING,
     "DMARC p=reject without rua: no aggregate reports; add rua=mailto:...", "reject"),
    ("twodmarc.test", ERROR, "two DMARC records at _dmarc.twodmarc.test; receivers ignore "
     "both: merge them into one", None),
    ("servfail.test", ERROR,
     "SERVFAIL looking up _dmarc.servfail.test; the domain's nameservers are failing", None),
    ("slow.test", ERROR,
     "timeout looking up _dmarc.slow.test; the domain's nameservers do not answer", None),
])
async def test_dmarc(resolver: DNSResolver, domain: str, status: CheckStatus, message: str,
                    policy: str | None) -> None:
    """DMARC missing, monitoring-only, invalid, inherited or unreachable, each with its fix;
    a DNS failure is never reported as a missing record."""
    report = await check_domain(domain, resolver=resolver)
    dmarc = _check(report, CheckName.DMARC)
    assert (dmarc.status, dmarc.message) == (status, message)
    assert report.dmarc_policy == policy


@pytest.mark.parametrize(("domain", "status", "message"), [
    ("nomx.test", ERROR, 'no MX record for nomx.test; publish MX records for your mail servers,'
     ' or a null MX "0 ." if the domain receives no mail'),
    ("nullmx.test", OK, "null MX: nullmx.test receives no mail (RFC 7505)"),
    ("mxbroken.test", ERROR, "MX nowhere.mxbroken.test does not resolve (no A or AAAA); fix "
     "its address or the MX record"),
    ("slow.test", ERROR, "timeout looking up slow.test; the domain's nameservers do not answer"),
])
async def test_mx(resolver: DNSResolver, domain: str, status: CheckStatus, message: str) -> None:
    """No MX is an error, a null MX is fine, an exchanger that does not resolve is named."""
    mx = _check(await check_domain(domain, resolver=resolver), CheckName.MX)
    assert (mx.status, mx.message) == (status, message)


@pytest.mark.parametrize(("domain", "check", "status", "message"), [
    ("nomx.test", CheckName.MTA_STS, WARNING,
     "no MTA-STS record at _mta-sts.nomx.test; optional but "
     "recommended: publish v=STSv1; id=... and a policy at "
     "https://mta-sts.nomx.test/.well-known/mta-sts.txt"),
    ("badsts.test", CheckName.MTA_STS, ERROR, "MTA-STS record at _mta-sts.badsts.test is invalid: "
     "id=not-valid! must be 1 to 32 letters and digits"),
    ("nomx.test", CheckName.TLS_RPT, WARNING,
     "no TLS-RPT record at _smtp._tls.nomx.test; optional but "
     "recommended: publish v=TLSRPTv1; rua=mailto:..."),
    ("badsts.test", CheckName.TLS_RPT, ERROR,
     "TLS-RPT record at _smtp._tls.badsts.test is invalid: "
     "rua 'ftp://reports.badsts.test' is not a mailto: or https: URI"),
])
async def test_mta_sts_and_tls_rpt(resolver: DNSResolver, domain: str, check: CheckName,
                                  status: CheckStatus, message: str) -> None:
    """MTA-STS and TLS-RPT absent are warnings, invalid ones errors."""
    result = _check(await check_domain(domain, resolver=resolver), check)
    assert (result.status, result.message) == (status, message)


async def test_relay_with_matching_ptr_and_blocklists(resolver: DNSResolver) -> None:
    """IPv4 and IPv6 PTRs resolve back; a 127.255.255.x answer is blocked_query, no listing."""
    report = await check_relay_host("r", "relay-ok.test", resolver=resolver,
                                    blocklists=("bl.test", "block.test"))
    assert report.addresses == ("192.0.2.10", "2001:db8::10")
    assert report.ptr_matches == {"192.0.2.10": True, "2001:db8::10": True}
    assert report.listed == {("192.0.2.10", "bl.test"): False,
                             ("192.0.2.10", "block.test"): False,
                             ("2001:db8::10", "bl.test"): False,
                             ("2001:db8::10", "block.test"): False}
    got = {(c.check, c.selector, c.zone): (c.status, c.message) for c in report.checks}
    assert got[(CheckName.ADDRESS, None, None)] == (
        OK, "relay-ok.test resolves to 192.0.2.10, 2001:db8::10")
    assert got[(CheckName.PTR, "2001:db8::10", None)] == (
        OK, "2001:db8::10 has PTR relay-ok.test, which resolves back to it")
    assert got[(CheckName.DNSBL, "192.0.2.10", "bl.test")] == (
        OK, "192.0.2.10 is not listed on bl.test")
    assert got[(CheckName.DNSBL, "192.0.2.10", "block.test")] == (
        WARNING, "block.test answered 127.255.255.254 (blocked_query): the list refuses "
        "queries from this resolver; use your own resolver")


@pytest.mark.parametrize(("host", "check", "status", "message"), [
    ("relay-mismatch.test", CheckName.PTR, ERROR, "PTR of 192.0.2.11 is other.test, which does not "
     "resolve back to it; point other.test's A record at 192.0.2.11 or fix the PTR"),
    ("relay-noptr.test", CheckName.PTR, ERROR,
     "no PTR for 192.0.2.12; ask the address owner to set "
     "reverse DNS to the relay's host name"),
    ("relay-listed.test", CheckName.DNSBL, ERROR,
     "192.0.2.20 is listed on bl.test (127.0.0.2); find "
     "the cause, then request delisting from the list"),
    ("relay-ok.test", CheckName.DNSBL, ERROR, "SERVFAIL looking up 10.2.0.192.broken-bl.test; "
     "broken-bl.test's nameservers are failing"),
    ("nowhere.test", CheckName.ADDRESS, ERROR,
     "nowhere.test has no A or AAAA record; fix the relay host name"),
    ("servfail.test", CheckName.ADDRESS, ERROR,
     "SERVFAIL looking up servfail.test; the domain's nameservers are failing"),
])
async def test_relay_failures(resolver: DNSResolver, host: str, check: CheckName,
                              status: CheckStatus, message: str) -> None:
    """PTR mismatch, no PTR, a listing, a failing list and an unresolvable host are errors."""
    zones_ = ("broken-bl.test",) if host == "relay-ok.test" else ("bl.test",)
    report = await check_relay_host("r", host, resolver=resolver, blocklists=zones_)
    found = next(c for c in report.checks if c.check == check)  # the IPv4 address's, first
    assert (found.status, found.message) == (status, message)
    assert all(c.subject == "r" for c in report.checks)


async def test_listing_is_reported_and_failures_are_not_listings(resolver: DNSResolver) -> None:
    """listed holds True for the listed pair; a SERVFAILing list is absent, not a listing."""
    listed = await check_relay_host("r", "relay-listed.test", resolver=resolver,
                                    blocklists=("bl.test",))
    assert listed.listed == {("192.0.2.20", "bl.test"): True}
    failing = await check_relay_host("r", "192.0.2.10", resolver=resolver,
                                     blocklists=("broken-bl.test",))
    assert failing.addresses == ("192.0.2.10",)
    assert failing.listed == {}


async def test_checks_of_one_domain_run_concurrently(resolver: DNSResolver) -> None:
    """Three timing-out lookups of one domain cost one timeout, not three."""
    start = time.monotonic()
    report = await check_domain("slow.test", resolver=resolver)
    assert time.monotonic() - start < 1.2
    assert sum(c.message.startswith("timeout") for c in report.checks) == 3


# caching: a server of its own per test, so its query log is this test's


@pytest.fixture
def fresh(server_loop: ServerLoop) -> Iterator[DNSServer]:
    server = DNSServer(server_loop, zones(), set(SERVFAIL), timeout=set(TIMEOUT),
                       ttls={"_dmarc.good.test": 30}, negative_ttl=20)
    yield server
    server.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_second_check_within_ttl_makes_no_queries(fresh: DNSServer) -> None:
    """A second check_domain within the TTL answers from the cache, negative answers too."""
    clock = FakeClock()
    resolver = DNSResolver(nameservers=(("127.0.0.1", fresh.port),), timeout=0.5, clock=clock)
    first = await check_domain("good.test", resolver=resolver, dkim_selectors=("s2048", "x"))
    asked = len(fresh.queries)
    assert asked > 0 and "x._domainkey.good.test TXT" in fresh.queries
    clock.now += 19
    second = await check_domain("good.test", resolver=resolver, dkim_selectors=("s2048", "x"))
    assert len(fresh.queries) == asked
    assert [(c.status, c.message) for c in first.checks] == [
        (c.status, c.message) for c in second.checks]


async def test_expired_ttl_queries_again(fresh: DNSServer) -> None:
    """After its TTL a record is asked again; max_ttl bounds how long anything is kept."""
    clock = FakeClock()
    resolver = DNSResolver(nameservers=(("127.0.0.1", fresh.port),), timeout=0.5, clock=clock,
                           max_ttl=45)
    await check_domain("good.test", resolver=resolver, dkim_selectors=("x",))
    clock.now += 31  # past _dmarc.good.test's 30 s and the 20 s negative TTL, within 45 s
    before = len(fresh.queries)
    await check_domain("good.test", resolver=resolver, dkim_selectors=("x",))
    again = fresh.queries[before:]
    assert "_dmarc.good.test TXT" in again
    assert "x._domainkey.good.test TXT" in again  # NXDOMAIN, SOA minimum 20 s
    assert "good.test TXT" not in again  # 60 s TTL still fresh
    clock.now += 15  # 46 s: past max_ttl
    before = len(fresh.queries)
    await check_domain("good.test", resolver=resolver)
    assert "good.test TXT" in fresh.queries[before:]


async def test_servfail_and_timeout_are_not_cached(fresh: DNSServer) -> None:
    """Failures are asked again at the next check, so a recovered zone shows at once."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", fresh.port),), timeout=0.3)
    await check_domain("servfail.test", resolver=resolver)
    await check_domain("servfail.test", resolver=resolver)
    assert fresh.queries.count("_dmarc.servfail.test TXT") == 2
    fresh.protocol.servfail.discard("_dmarc.servfail.test")
    fresh.protocol.records["_dmarc.servfail.test"] = [("TXT", '"v=DMARC1; p=reject"')]
    report = await check_domain("servfail.test", resolver=resolver)
    assert _check(report, CheckName.DMARC).status is WARNING  # p=reject without rua
    before = fresh.queries.count("_dmarc.slow.test TXT")
    await check_domain("slow.test", resolver=resolver)
    assert fresh.queries.count("_dmarc.slow.test TXT") > before


async def test_concurrent_queries_for_one_name_share_one_lookup(fresh: DNSServer) -> None:
    """The SPF and MX checks of one domain ask for mx1.good.test once, not twice."""
    resolver = DNSResolver(nameservers=(("127.0.0.1", fresh.port),), timeout=0.5)
    await check_domain("deep.test", resolver=resolver)
    assert fresh.queries.count("mx1.good.test A") == 1


async def test_internal_relay_addresses_are_not_looked_up(resolver: DNSResolver) -> None:
    """A relay on an internal address gets no PTR or DNSBL check, and the address check
    says why and what to set instead."""
    report = await check_relay_host("r", "127.0.0.1", resolver=resolver, blocklists=("bl.test",))
    assert [c.check for c in report.checks] == [CheckName.ADDRESS]
    assert "127.0.0.1: not a public address" in report.checks[0].message
    assert "set egress_addresses" in report.checks[0].message


async def test_egress_addresses_are_checked_instead_of_the_relay_host(
    resolver: DNSResolver,
) -> None:
    """With egress_addresses, PTR and blocklists apply to those addresses, internal or not,
    and never to what the host resolves to."""
    report = await check_relay_host("r", "relay-ok.test", resolver=resolver,
                                    blocklists=("bl.test",), egress=("192.0.2.20", "10.9.9.9"))
    assert report.addresses == ("192.0.2.10", "2001:db8::10")  # still resolved and reported
    assert {c.selector for c in report.checks if c.check in (CheckName.PTR, CheckName.DNSBL)} == {
        "192.0.2.20", "10.9.9.9"}
    assert report.listed[("192.0.2.20", "bl.test")] is True
    assert report.listed[("10.9.9.9", "bl.test")] is False
    ptr = {c.selector: c for c in report.checks if c.check == CheckName.PTR}
    assert ptr["10.9.9.9"].status is CheckStatus.ERROR
    assert ptr["10.9.9.9"].message.startswith("no PTR for 10.9.9.9")
    assert "mail leaves from 192.0.2.20, 10.9.9.9 (egress_addresses)" in report.checks[0].message
