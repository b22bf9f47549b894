"""The DNS status series: one per check that has a result, none for checks that did not run,
labelled with the plain check names."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from exporter.dns.metrics import DOMAIN_CHECKS, RELAY_CHECKS, dns_families
from exporter.dns.result import CheckName, CheckStatus, DNSCheck, DomainReport, RelayDNSReport
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
        checks=(DNSCheck("relay", CheckName.ADDRESS, CheckStatus.OK, "resolves to 127.0.3.1"),),
        addresses=("127.0.3.1",),
    ))
    store.record(DomainReport(
        domain="example.test", checked_at=0.0,
        checks=(DNSCheck("example.test", CheckName.MX, CheckStatus.OK, "one MX host"),
                DNSCheck("example.test", CheckName.DMARC, CheckStatus.ERROR, "no DMARC record")),
    ))

    status = _samples(store, "smtp_dns_check_status")
    assert status == {
        ("address", "mail.example.test", "relay"): 1.0,
        ("mx", "example.test", ""): 1.0,
        ("dmarc", "example.test", ""): 0.0,
    }
    info = _samples(store, "smtp_dns_check_info")
    assert info[("dmarc", "example.test", "", "error")] == 1.0
    assert ("dmarc", "example.test", "", "ok") not in info  # the current status only
    assert not any(key[0] in ("ptr", "dnsbl") for key in info)
    assert not any("unchecked.test" in key for key in info)


def test_check_labels_are_the_plain_check_names() -> None:
    """The check label on /metrics reads mx, spf, dkim, dmarc, mta_sts, tls_rpt, address,
    ptr and dnsbl, for the status series and for every duration histogram."""
    assert [c.value for c in CheckName] == [
        "mx", "spf", "dkim", "dmarc", "mta_sts", "tls_rpt", "address", "ptr", "dnsbl"]
    store = DNSStore()
    store.configure(["example.test"], [("relay", "mail.example.test")])
    store.record(DomainReport(domain="example.test", checked_at=0.0, checks=tuple(
        DNSCheck("example.test", c, CheckStatus.OK, "fine") for c in DOMAIN_CHECKS)))
    store.record(RelayDNSReport(relay="relay", host="mail.example.test", checked_at=0.0,
                                checks=tuple(DNSCheck("relay", c, CheckStatus.OK, "fine")
                                             for c in RELAY_CHECKS)))

    class Collector:
        def collect(self) -> Iterator[Metric]:
            return dns_families(store.snapshot())

    registry = CollectorRegistry()
    registry.register(Collector())
    text = generate_latest(registry).decode()
    for name in ("mx", "spf", "dkim", "dmarc", "mta_sts", "tls_rpt"):
        assert (f'smtp_dns_check_status{{check="{name}",domain="example.test",relay=""}} 1.0'
                in text)
    for name in ("address", "ptr", "dnsbl"):
        assert (f'smtp_dns_check_status{{check="{name}",domain="mail.example.test",'
                f'relay="relay"}} 1.0' in text)
    for name in CheckName:
        assert f'smtp_dns_check_duration_seconds_count{{check="{name.value}"}} ' in text
    assert "CheckName" not in text


def test_relays_sharing_a_host_have_their_own_check_series() -> None:
    """Two relays on one host (587 and 465) each get their own status and info series,
    labelled relay= and domain= the host, so a failing check names the relay it concerns."""
    store = DNSStore()
    store.configure([], [("submission", "mail.example.test"), ("smtps", "mail.example.test")])
    for relay, ptr in (("submission", CheckStatus.OK), ("smtps", CheckStatus.ERROR)):
        store.record(RelayDNSReport(
            relay=relay, host="mail.example.test", checked_at=0.0,
            checks=(DNSCheck(relay, CheckName.ADDRESS, CheckStatus.OK, "resolves"),
                    DNSCheck(relay, CheckName.PTR, ptr, "reverse DNS"))))

    status = _samples(store, "smtp_dns_check_status")
    assert status == {
        ("address", "mail.example.test", "smtps"): 1.0,
        ("ptr", "mail.example.test", "smtps"): 0.0,
        ("address", "mail.example.test", "submission"): 1.0,
        ("ptr", "mail.example.test", "submission"): 1.0,
    }
    info = _samples(store, "smtp_dns_check_info")
    assert info[("ptr", "mail.example.test", "smtps", "error")] == 1.0
    assert info[("ptr", "mail.example.test", "submission", "ok")] == 1.0
    assert len(info) == 4  # one series per check: its current status
