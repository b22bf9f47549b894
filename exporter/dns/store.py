"""DNSStore: the latest DNS report per domain and per relay host, handed out as snapshots."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.dns.result import CheckName, DomainReport, RelayDNSReport
from exporter.histogram import Histogram

__all__ = ["DNS_BUCKETS", "DNSSnapshot", "DNSStore"]

# Seconds per DNS check: a cached answer takes microseconds, a resolver round trip
# milliseconds, a timing-out nameserver the whole timeout.
DNS_BUCKETS: tuple[float, ...] = (
    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True, slots=True)
class DNSSnapshot:
    domains: Mapping[str, DomainReport | None]
    relays: Mapping[str, RelayDNSReport | None]
    hosts: Mapping[str, str] = field(default_factory=dict)  # relay -> host
    durations: Mapping[CheckName, Histogram] = field(default_factory=dict)


class DNSStore:
    """Thread-safe: the event loop records reports, the HTTP thread takes snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._domains: dict[str, DomainReport | None] = {}
        self._relays: dict[str, RelayDNSReport | None] = {}
        self._durations: dict[CheckName, Histogram] = {}
        self._hosts: dict[str, str] = {}

    def configure(self, domains: Iterable[str], relays: Iterable[tuple[str, str]]) -> None:
        """The domains and (relay, host) pairs checked; reports of kept ones stay."""
        with self._lock:
            self._domains = {d: self._domains.get(d) for d in domains}
            self._hosts = dict(relays)
            self._relays = {r: self._relays.get(r) for r in self._hosts}

    def record(self, report: DomainReport | RelayDNSReport) -> None:
        with self._lock:
            if isinstance(report, DomainReport):
                if report.domain not in self._domains:
                    return
                self._domains[report.domain] = report
            else:
                if report.relay not in self._relays:
                    return
                self._relays[report.relay] = report
            for check in report.checks:
                hist = self._durations.get(check.check, Histogram.empty(DNS_BUCKETS))
                self._durations[check.check] = hist.observe(check.duration)

    def snapshot(self) -> DNSSnapshot:
        with self._lock:
            return DNSSnapshot(dict(self._domains), dict(self._relays), dict(self._hosts),
                               dict(self._durations))
