"""The DNS status series: one per check that has a result, none for checks that did not run."""

from __future__ import annotations

from exporter.dns.metrics import dns_families
from exporter.dns.result import CheckStatus, DNSCheck, DomainReport, RelayDNSReport
from exporter.dns.store import DNSStore


def _samples(store: DNSStore, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for family in dns_families(store.snapshot()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return {tuple(v for _k, v in key): value for key, value in out.items()}


def test_checks_without_a_result_have_no_status_series() -> None:
    """A loopback relay host gets only the address check (reverse DNS and blocklists do not
    apply): ptr and dnsbl must not read 0, which means "warning or error"."""
    store = DNSStore()
    store.configure(["example.test", "unchecked.test"], [("relay", "mail.example.test")])
    store.record(RelayDNSReport(
        relay="relay", host="mail.example.test", checked_at=0.0,
        checks=(DNSCheck("relay", "address", CheckStatus.OK, "resolves to 127.0.3.1"),),
        addresses=("127.0.3.1",),
    ))
    store.record(DomainReport(
        domain="example.test", checked_at=0.0,
        checks=(DNSCheck("example.test", "mx", CheckStatus.OK, "one MX host"),
                DNSCheck("example.test", "dmarc", CheckStatus.ERROR, "no DMARC record")),
    ))

    status = _samples(store, "smtp_dns_check_status")
    assert status == {
        ("address", "mail.example.test"): 1.0,
        ("mx", "example.test"): 1.0,
        ("dmarc", "example.test"): 0.0,
    }
    info = _samples(store, "smtp_dns_check_info")
    assert info[("dmarc", "example.test", "error")] == 1.0
    assert info[("dmarc", "example.test", "ok")] == 0.0
    assert not any(key[0] in ("ptr", "dnsbl") for key in info)
    assert not any("unchecked.test" in key for key in info)
