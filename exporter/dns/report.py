"""The DNS section of ``probe``: check once, print as a table or attach to the JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.config import Config, check_domains
from exporter.dns.checks import DNSResolver, check_domain, check_relay_host
from exporter.dns.manager import checkable
from exporter.dns.result import DNSCheck, DomainReport, RelayDNSReport

__all__ = ["DNSResults", "attach_dns", "format_dns", "probe_dns"]


@dataclass(frozen=True, slots=True)
class DNSResults:
    domains: tuple[DomainReport, ...]
    relays: tuple[RelayDNSReport, ...]


async def probe_dns(config: Config, names: Sequence[str] | None) -> DNSResults:
    """Check every sending domain and the selected relays' hosts, all at once."""
    resolver = DNSResolver(nameservers=config.dns.nameservers, timeout=config.dns.timeout,
                           max_ttl=config.dns.interval)
    ns = config.dns.nameservers
    relays = [r for r in config.relays if names is None or r.name in names]
    domains = [d for d in check_domains(config.domains, tuple(relays)) if checkable(d.name, ns)]
    relays = [r for r in relays if checkable(r.host, ns)]
    domain_reports = await asyncio.gather(*(
        check_domain(d.name, resolver=resolver, dkim_selectors=d.dkim_selectors,
                     expect_spf_includes=d.expect_spf_includes) for d in domains))
    relay_reports = await asyncio.gather(*(
        check_relay_host(r.name, r.host, resolver=resolver, blocklists=config.blocklists,
                         egress=r.egress_addresses)
        for r in relays))
    return DNSResults(tuple(domain_reports), tuple(relay_reports))


def check_to_dict(check: DNSCheck) -> dict[str, Any]:
    return {"check": check.check.value, "status": check.status.value, "message": check.message,
            "selector": check.selector, "zone": check.zone,
            "duration": round(check.duration, 6)}


def attach_dns(doc: list[dict[str, Any]], dns: DNSResults) -> None:
    """Each relay's JSON object gains ``dns``: its host's checks and every domain's."""
    domains = {d.domain: [check_to_dict(c) for c in d.checks] for d in dns.domains}
    hosts = {r.relay: [check_to_dict(c) for c in r.checks] for r in dns.relays}
    for item in doc:
        item["dns"] = {"host": hosts.get(item["relay"], []), "domains": domains}


def format_dns(dns: DNSResults) -> str:
    """SUBJECT  CHECK  STATUS  MESSAGE rows: the domains first, then the relay hosts."""
    rows = [["SUBJECT", "CHECK", "STATUS", "MESSAGE"]]
    for report in dns.domains:
        rows += [_row(report.domain, c) for c in report.checks]
    for relay in dns.relays:
        rows += [_row(f"{relay.relay} ({relay.host})", c) for c in relay.checks]
    if len(rows) == 1:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)),
                        row[3]]) for row in rows]
    return "\nDNS\n" + "\n".join(lines) + "\n"


def _row(subject: str, check: DNSCheck) -> list[str]:
    what = check.check.value + "".join(f" {x}" for x in (check.selector, check.zone) if x)
    return [subject, what, check.status.value, check.message]
