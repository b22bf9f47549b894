"""The DNS checks' metric families, built from one DNSSnapshot per scrape."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from exporter.dns.result import CheckName, CheckStatus, DNSCheck
from exporter.dns.store import DNS_BUCKETS, DNSSnapshot
from exporter.exposition import Spec
from exporter.histogram import Histogram

__all__ = ["DNS_RELAY_SPECS", "DOMAIN_CHECKS", "RELAY_CHECKS", "dns_domain_families",
           "dns_families", "dns_relay_families", "worst"]

DOMAIN_CHECKS = (CheckName.MX, CheckName.SPF, CheckName.DKIM, CheckName.DMARC,
                 CheckName.MTA_STS, CheckName.TLS_RPT)
RELAY_CHECKS = (CheckName.ADDRESS, CheckName.PTR, CheckName.DNSBL)
_RANK = {CheckStatus.OK: 0, CheckStatus.WARNING: 1, CheckStatus.ERROR: 2}


def worst(checks: Iterable[DNSCheck]) -> dict[CheckName, CheckStatus]:
    """The worst status of each check name (dkim has one check per selector)."""
    out: dict[CheckName, CheckStatus] = {}
    for check in checks:
        if check.check not in out or _RANK[check.status] > _RANK[out[check.check]]:
            out[check.check] = check.status
    return out


STATUS = Spec("smtp_dns_check_status",
              "1 if the DNS check is ok, 0 on a warning or an error (see smtp_dns_check_info).",
              "gauge", ("domain", "check", "relay"))
INFO = Spec("smtp_dns_check_info",
            "1 with the current status (ok, warning, error) of each check in its status label.",
            "gauge", ("domain", "check", "status", "relay"))
PTR = Spec("smtp_dns_ptr_matches",
           "1 if the relay address's PTR name resolves back to it (FCrDNS).", "gauge",
           ("relay", "address"))
LISTED = Spec("smtp_dnsbl_listed", "1 if the relay address is listed in the DNS blocklist zone.",
              "gauge", ("relay", "address", "zone"))
# The families with a relay label; the rest are per domain or per check.
DNS_RELAY_SPECS = (STATUS, INFO, PTR, LISTED)


def dns_families(snap: DNSSnapshot) -> Iterator[Metric]:
    yield from dns_relay_families(snap)
    yield from dns_domain_families(snap)


def dns_relay_families(snap: DNSSnapshot) -> Iterator[Metric]:
    """The check status families (domain and relay checks) and the relay address families."""
    status, info, ptr, listed = STATUS.gauge(), INFO.gauge(), PTR.gauge(), LISTED.gauge()
    for domain, report in sorted(snap.domains.items()):
        current = worst(report.checks) if report else {}
        _add_status(status, info, domain, "", DOMAIN_CHECKS, current)
    for relay, relay_report in sorted(snap.relays.items()):
        # One series per relay, domain= its host: relays sharing a host (587 and 465) stay
        # apart, and a failing check names the relay whose egress it concerns.
        _add_status(status, info, snap.hosts.get(relay, relay), relay, RELAY_CHECKS,
                    worst(relay_report.checks) if relay_report else {})
        if relay_report is None:
            continue
        for address, matches in sorted(relay_report.ptr_matches.items()):
            ptr.add_metric([relay, address], 1 if matches else 0)
        for (address, zone), is_listed in sorted(relay_report.listed.items()):
            listed.add_metric([relay, address, zone], 1 if is_listed else 0)
    yield from (status, info, ptr, listed)


def dns_domain_families(snap: DNSSnapshot) -> Iterator[Metric]:
    """The families without a relay label: SPF, DKIM and DMARC facts, and check durations."""
    spf = GaugeMetricFamily("smtp_dns_spf_lookups",
                            "DNS-querying SPF terms after following include and redirect "
                            "(the limit is 10).", labels=["domain"])
    # In bytes, the base unit promtool requires (a 2048-bit RSA key reads 256).
    dkim = GaugeMetricFamily("smtp_dns_dkim_key_size_bytes",
                             "Size of each DKIM public key in bytes (RSA: modulus bits / 8).",
                             labels=["domain", "selector"])
    dmarc = GaugeMetricFamily("smtp_dns_dmarc_policy_info",
                              "The DMARC policy (p) and subdomain policy (sp); always 1.",
                              labels=["domain", "policy", "subdomain_policy"])
    pct = GaugeMetricFamily("smtp_dns_dmarc_pct", "The DMARC pct tag.", labels=["domain"])
    durations = HistogramMetricFamily("smtp_dns_check_duration_seconds",
                                      "Time each DNS check took.", labels=["check"])
    for domain, report in sorted(snap.domains.items()):
        if report is None:
            continue
        if report.spf_lookups is not None:
            spf.add_metric([domain], report.spf_lookups)
        for selector, bits in sorted(report.dkim_key_bits.items()):
            dkim.add_metric([domain, selector], bits / 8)
        if report.dmarc_policy is not None:
            dmarc.add_metric([domain, report.dmarc_policy,
                              report.dmarc_subdomain_policy or report.dmarc_policy], 1)
        if report.dmarc_pct is not None:
            pct.add_metric([domain], report.dmarc_pct)
    empty = Histogram.empty(DNS_BUCKETS)
    for check in (*DOMAIN_CHECKS, *RELAY_CHECKS):
        hist = snap.durations.get(check, empty)
        durations.add_metric([check.value], hist.cumulative(), hist.total)
    yield from (spf, dkim, dmarc, pct, durations)


def _add_status(status: GaugeMetricFamily, info: GaugeMetricFamily, subject: str, relay: str,
                names: tuple[CheckName, ...], current: dict[CheckName, CheckStatus]) -> None:
    # A check without a result -- not run yet, or not applicable (reverse DNS and blocklists
    # of a private address, blocklists when none are configured) -- has no series: a 0 would
    # read as a warning or an error that nobody can fix. Domain checks carry relay="", which
    # Prometheus stores as no label at all: their series stay the ones they were before relay
    # checks gained the label, and every sample of the family has the same label names.
    # smtp_dns_check_info has the current status only (value 1): one series per check.
    for name in names:
        now = current.get(name)
        if now is None:
            continue
        status.add_metric([subject, name.value, relay], 1 if now is CheckStatus.OK else 0)
        info.add_metric([subject, name.value, now.value, relay], 1)
