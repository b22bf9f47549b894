"""The sending domains' and relay hosts' DNS: resolver -> record parsers -> checks ->
scheduler -> store -> metric families, and the probe command's report."""

from __future__ import annotations

from exporter.dns.exposition import DNSBlocks
from exporter.dns.manager import DNSManager
from exporter.dns.metrics import dns_domain_families, dns_families
from exporter.dns.report import attach_dns, format_dns, probe_dns
from exporter.dns.result import DomainReport, RelayDNSReport
from exporter.dns.store import DNSSnapshot, DNSStore

__all__ = [
    "DNSBlocks",
    "DNSManager",
    "DNSSnapshot",
    "DNSStore",
    "DomainReport",
    "RelayDNSReport",
    "attach_dns",
    "dns_domain_families",
    "dns_families",
    "format_dns",
    "probe_dns",
]
