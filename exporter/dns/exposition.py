"""The DNS check families with a relay label, as /metrics sample lines: each relay's block is
rendered once per report and kept until its report changes; domain rows are few and rendered
at each scrape."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from exporter.dns.metrics import DNS_RELAY_SPECS, DOMAIN_CHECKS, RELAY_CHECKS, worst
from exporter.dns.result import CheckName, CheckStatus, RelayDNSReport
from exporter.dns.store import DNSSnapshot
from exporter.exposition import Spec, esc

__all__ = ["DNSBlocks", "relay_dns_block"]


def _status(subject: str, relay: str, names: tuple[CheckName, ...],
            current: dict[CheckName, CheckStatus]) -> tuple[str, str]:
    d = f'domain="{esc(subject)}",relay="{esc(relay)}"'
    status, info = [], []
    for name in names:
        now = current.get(name)
        if now is None:
            continue
        ok = "1.0" if now is CheckStatus.OK else "0.0"
        status.append(f'smtp_dns_check_status{{check="{name}",{d}}} {ok}\n')
        info.append(f'smtp_dns_check_info{{check="{name}",{d},status="{now}"}} 1.0\n')
    return "".join(status), "".join(info)


def relay_dns_block(relay: str, host: str, report: RelayDNSReport | None) -> tuple[str, ...]:
    """A relay's lines of DNS_RELAY_SPECS, as prometheus_client writes dns_relay_families."""
    status, info = _status(host, relay, RELAY_CHECKS, worst(report.checks) if report else {})
    if report is None:
        return status, info, "", ""
    r = esc(relay)
    ptr = "".join(f'smtp_dns_ptr_matches{{address="{esc(a)}",relay="{r}"}} '
                  f'{"1.0" if ok else "0.0"}\n' for a, ok in sorted(report.ptr_matches.items()))
    listed = "".join(f'smtp_dnsbl_listed{{address="{esc(a)}",relay="{r}",zone="{esc(z)}"}} '
                     f'{"1.0" if hit else "0.0"}\n'
                     for (a, z), hit in sorted(report.listed.items()))
    return status, info, ptr, listed


class DNSBlocks:
    """Rendered relay blocks, each kept while the relay's report and host are unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[RelayDNSReport | None, str, tuple[str, ...]]] = {}

    def families(self, snap: DNSSnapshot) -> Iterator[tuple[Spec, Sequence[str]]]:
        blocks: list[tuple[str, ...]] = []
        for domain, report in sorted(snap.domains.items()):
            current = worst(report.checks) if report else {}
            blocks.append((*_status(domain, "", DOMAIN_CHECKS, current), "", ""))
        with self._lock:
            old = self._cache
            fresh: dict[str, tuple[RelayDNSReport | None, str, tuple[str, ...]]] = {}
            for relay, found in sorted(snap.relays.items()):
                host = snap.hosts.get(relay, relay)
                cached = old.get(relay)
                if cached is not None and cached[0] is found and cached[1] == host:
                    entry = cached
                else:
                    entry = (found, host, relay_dns_block(relay, host, found))
                fresh[relay] = entry
                blocks.append(entry[2])
            self._cache = fresh
        for index, spec in enumerate(DNS_RELAY_SPECS):
            yield spec, [block[index] for block in blocks if block[index]]
