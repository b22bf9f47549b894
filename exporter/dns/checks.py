"""DNS health of sending domains (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT) and relay hosts
(addresses, forward-confirmed reverse DNS, blocklists), each check a status and a fix."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Sequence

import dns.reversename

from exporter.dns.finding import Finding
from exporter.dns.mailpolicy import (
    check_dkim,
    check_dmarc,
    check_mta_sts,
    check_mx,
    check_tls_rpt,
    org_domain,
)
from exporter.dns.resolver import Answer, DNSResolver, failure_message
from exporter.dns.result import CheckName, CheckStatus, DNSCheck, DomainReport, RelayDNSReport
from exporter.dns.spf import check_spf

__all__ = ["Answer", "DNSResolver", "check_domain", "check_relay_host", "org_domain"]

OK, WARNING, ERROR = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.ERROR
_BLOCKED_QUERY = ipaddress.ip_network("127.255.255.0/24")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


async def _timed(
    subject: str, check: CheckName, work: Awaitable[Finding], *,
    selector: str | None = None, zone: str | None = None,
) -> tuple[DNSCheck, Finding]:
    start = time.perf_counter()
    finding = await work
    duration = time.perf_counter() - start
    return DNSCheck(subject, check, finding.status, finding.message, selector=selector,
                    zone=zone, duration=duration), finding


async def check_domain(
    domain: str,
    *,
    resolver: DNSResolver,
    dkim_selectors: Sequence[str] = (),
    expect_spf_includes: Sequence[str] = (),
) -> DomainReport:
    """Run every check of a sending domain concurrently; never raises for a DNS failure."""
    checked_at = time.time()
    domain = domain.rstrip(".").lower()
    jobs = [
        _timed(domain, CheckName.MX, check_mx(domain, resolver=resolver)),
        _timed(domain, CheckName.SPF, check_spf(domain, resolver=resolver,
                                                expect_includes=expect_spf_includes)),
        *(_timed(domain, CheckName.DKIM, check_dkim(domain, s, resolver=resolver),
                 selector=s) for s in dkim_selectors),
        _timed(domain, CheckName.DMARC, check_dmarc(domain, resolver=resolver)),
        _timed(domain, CheckName.MTA_STS, check_mta_sts(domain, resolver=resolver)),
        _timed(domain, CheckName.TLS_RPT, check_tls_rpt(domain, resolver=resolver)),
    ]
    done = await asyncio.gather(*jobs)
    findings = {(c.check, c.selector): f for c, f in done}
    spf, dmarc = findings[(CheckName.SPF, None)], findings[(CheckName.DMARC, None)]
    bits = {c.selector: f.dkim_bits for c, f in done
            if c.check is CheckName.DKIM and c.selector is not None and f.dkim_bits is not None}
    return DomainReport(
        domain=domain, checked_at=checked_at, checks=tuple(c for c, _ in done),
        spf_lookups=spf.spf_lookups, dkim_key_bits=bits, dmarc_policy=dmarc.dmarc_policy,
        dmarc_subdomain_policy=dmarc.dmarc_subdomain_policy, dmarc_pct=dmarc.dmarc_pct,
    )


async def check_relay_host(
    relay: str, host: str, *, resolver: DNSResolver, blocklists: Sequence[str] = (),
    egress: Sequence[str] = (),
) -> RelayDNSReport:
    """Resolve ``host``, then check each address's PTR (forward-confirmed) and each
    blocklist zone concurrently; never raises for a DNS failure.

    ``egress`` are the addresses the relay's mail leaves from, when they are not the ones
    ``host`` resolves to (a submission host behind NAT, a provider's outbound pool): they are
    checked instead, internal or not, since the config names them on purpose.
    """
    checked_at = time.time()
    start = time.perf_counter()
    addresses, finding = await _addresses(host, resolver)
    address_check = DNSCheck(relay, CheckName.ADDRESS, finding.status, finding.message,
                             duration=time.perf_counter() - start)
    if egress:
        checked = list(egress)
        address_check = DNSCheck(
            relay, CheckName.ADDRESS, address_check.status,
            f"{address_check.message}; mail leaves from {', '.join(egress)} "
            "(egress_addresses): reverse DNS and blocklists are checked there",
            duration=address_check.duration)
    else:
        checked = [a for a in addresses if not _internal(a)]
        internal = [a for a in addresses if _internal(a)]
        if internal:
            address_check = DNSCheck(
                relay, CheckName.ADDRESS, address_check.status,
                f"{address_check.message}; {', '.join(internal)}: not a public address, so "
                "reverse DNS and blocklists do not apply; set egress_addresses to check the "
                "address mail leaves from", duration=address_check.duration)
    jobs: list[Awaitable[tuple[DNSCheck, Finding]]] = []
    for address in checked:
        jobs.append(_timed(relay, CheckName.PTR, _ptr(address, resolver), selector=address))
        jobs.extend(_timed(relay, CheckName.DNSBL, _dnsbl(address, zone, resolver),
                           selector=address, zone=zone.rstrip(".").lower())
                    for zone in blocklists)
    done = await asyncio.gather(*jobs)
    ptr_matches = {c.selector: f.fcrdns for c, f in done
                   if c.check is CheckName.PTR and c.selector is not None and f.fcrdns is not None}
    listed = {(c.selector, c.zone): f.listed for c, f in done
              if c.selector is not None and c.zone is not None and f.listed is not None}
    return RelayDNSReport(
        relay=relay, host=host, checked_at=checked_at,
        checks=(address_check, *(c for c, _ in done)), addresses=tuple(addresses),
        ptr_matches=ptr_matches, listed=listed,
    )


# Loopback, private, shared and link-local networks: never looked up in public reverse DNS or
# blocklists (nothing there knows them, and the queries would leak the internal layout).
_INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
))


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in _INTERNAL if net.version == ip.version)


async def _addresses(host: str, resolver: DNSResolver) -> tuple[list[str], Finding]:
    name = host.strip("[]").rstrip(".")
    try:
        literal = str(ipaddress.ip_address(name))
    except ValueError:
        pass
    else:
        return [literal], Finding(OK, f"{literal} is an address literal")
    answers = await asyncio.gather(resolver.query(name, "A"), resolver.query(name, "AAAA"))
    addresses = [r for a in answers for r in a.records if a.outcome == "ok"]
    failed = [a for a in answers if a.failed]
    if failed and not addresses:
        return [], Finding(ERROR, failure_message(failed[0]))
    if not addresses:
        return [], Finding(ERROR, f"{name} has no A or AAAA record; fix the relay host name")
    listing = ", ".join(addresses)
    if failed:
        return addresses, Finding(WARNING, f"{name} resolves to {listing}, but "
                                  f"{failure_message(failed[0])}")
    return addresses, Finding(OK, f"{name} resolves to {listing}")


async def _ptr(address: str, resolver: DNSResolver) -> Finding:
    reverse = dns.reversename.from_address(address).to_text().rstrip(".")
    answer = await resolver.query(reverse, "PTR")
    if answer.failed:
        return Finding(ERROR, failure_message(answer, "the reverse zone's nameservers"))
    if not answer.records:
        return Finding(ERROR, f"no PTR for {address}; ask the address owner to set reverse "
                       "DNS to the relay's host name", fcrdns=False)
    rdtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    names = [r.rstrip(".").lower() for r in answer.records]
    forwards = await asyncio.gather(*(resolver.query(n, rdtype) for n in names))
    wanted = ipaddress.ip_address(address)
    for name, forward in zip(names, forwards, strict=True):
        if any(_same(r, wanted) for r in forward.records):
            return Finding(OK, f"{address} has PTR {name}, which resolves back to it",
                           fcrdns=True)
    failed = [f for f in forwards if f.failed]
    if failed:
        return Finding(ERROR, failure_message(failed[0]))
    return Finding(ERROR, f"PTR of {address} is {names[0]}, which does not resolve back to "
                   f"it; point {names[0]}'s {rdtype} record at {address} or fix the PTR",
                   fcrdns=False)


def _same(text: str, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == wanted
    except ValueError:
        return False


def _dnsbl_name(address: str, zone: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        labels = reversed(str(ip).split("."))
    else:
        labels = reversed(ip.exploded.replace(":", ""))
    return ".".join(labels) + "." + zone.rstrip(".")


async def _dnsbl(address: str, zone: str, resolver: DNSResolver) -> Finding:
    zone = zone.rstrip(".").lower()
    answer = await resolver.query(_dnsbl_name(address, zone), "A")
    if answer.failed:
        return Finding(ERROR, failure_message(answer, f"{zone}'s nameservers"))
    if answer.outcome != "ok":
        return Finding(OK, f"{address} is not listed on {zone}", listed=False)
    codes = sorted(answer.records)
    if any(_in(code, _BLOCKED_QUERY) for code in codes):
        return Finding(WARNING, f"{zone} answered {codes[0]} (blocked_query): the list "
                       "refuses queries from this resolver; use your own resolver", listed=False)
    if not all(_in(code, _LOOPBACK) for code in codes):
        return Finding(WARNING, f"{zone} answered {codes[0]}, not a 127.0.0.0/8 code: the "
                       "resolver rewrites answers or the zone is gone; remove the zone "
                       "or use your own resolver", listed=False)
    return Finding(ERROR, f"{address} is listed on {zone} ({', '.join(codes)}); find the "
                   "cause, then request delisting from the list", listed=True)


def _in(text: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False

