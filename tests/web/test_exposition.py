"""/metrics joined from per-relay blocks reads exactly as prometheus_client would write it, in
text and OpenMetrics, follows every change, and promtool accepts it at 1,000 relays."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from exporter.canary import CanarySnapshot, CanaryStore, canary_families
from exporter.canary.result import CanarySent
from exporter.canary.store import ArrivalReport
from exporter.dns import DNSStore, DomainReport, RelayDNSReport, dns_families
from exporter.dns.result import CheckName, CheckStatus, DNSCheck
from exporter.exposition import gzip_chunks
from exporter.metrics import ExporterCollector
from exporter.model import Phase, Reason, TLSInfo
from exporter.relay import RelayInfo, RelayResult, ResultStore, relay_families
from tests.helpers import assert_promtool_accepts, value

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def fleet(n: int, *, hostile: bool = False) -> tuple[ResultStore, DNSStore]:
    """n relays with results of every kind: healthy, failing, OAuth2, opt-in histograms, and
    (``hostile``) label values that need escaping."""
    store, dns = ResultStore(), DNSStore()
    infos = []
    for i in range(n):
        name = f'relay-{i}' + ('"\\\n' if hostile and i == 1 else "")
        infos.append(RelayInfo(
            name=name, host=f"mx{i}.example.com", port=587, tls="starttls", auth="plain",
            preset="gmail" if i % 5 == 0 else "", oauth2=i % 7 == 3,
            phase_histograms=(Phase.CONNECT, Phase.TLS) if i % 4 == 2 else ()))
    store.configure(infos, warnings=(), source="test")
    dns.configure(["example.com"], [(info.name, info.host) for info in infos])
    dns.record(DomainReport(domain="example.com", checked_at=0.0, checks=(
        DNSCheck("example.com", CheckName.MX, CheckStatus.OK, "ok"),
        DNSCheck("example.com", CheckName.DMARC, CheckStatus.WARNING, "p=none"))))
    for i, info in enumerate(infos):
        if i % 3 == 1:
            store.record(RelayResult(
                relay=info.name, success=False, started_at=1.7e9 + i, duration=1.5,
                phases={Phase.RESOLVE: 0.002, Phase.CONNECT: 0.03, Phase.AUTH: 0.1},
                reason=Reason.AUTH_FAILED, failed_phase=Phase.AUTH, cause="",
                hint='535 "no"\nback\\slash' if hostile else "credentials refused"))
        if i % 11 != 10:  # some never probed yet
            store.record(RelayResult(
                relay=info.name, success=True, started_at=1.7e9 + 60 + i, duration=0.25 + i / n,
                phases={p: 0.001 * (k + 1) for k, p in enumerate(Phase) if p is not Phase.DATA},
                tls=TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", i % 2 == 0, 1.8e9 + i)))
        if i % 6 != 5:
            dns.record(RelayDNSReport(
                relay=info.name, host=info.host, checked_at=0.0, addresses=("192.0.2.1",),
                checks=(DNSCheck(info.host, CheckName.ADDRESS, CheckStatus.OK, "ok"),
                        DNSCheck(info.host, CheckName.DNSBL,
                                 CheckStatus.ERROR if i % 2 else CheckStatus.OK, "x")),
                ptr_matches={"192.0.2.1": i % 2 == 0},
                listed={("192.0.2.1", "zen.example.org"): i % 2 == 1}))
    return store, dns


def canaries(n: int) -> CanaryStore:
    """Canaries through every other relay to one mailbox: sent, failed, arrived, lost."""
    store = CanaryStore()
    relays = [f"relay-{i}" for i in range(0, n, 2)]
    store.configure([(r, "box") for r in relays], [("box", False)])
    for k, relay in enumerate(relays):
        store.sent(CanarySent(relay=relay, token=f"t{k}", success=k % 3 != 1,
                              started_at=1.7e9 + k, sent_at=1.7e9 + k + 0.5,
                              phases={Phase.MAIL: 0.01, Phase.RCPT: 0.02, Phase.DATA: 0.3},
                              reason=None if k % 3 != 1 else Reason.REJECTED_TEMPORARY,
                              hint=None if k % 3 != 1 else 'queue "full"', cause=""))
        if k % 3 == 0:
            store.arrived(ArrivalReport(
                relay=relay, mailbox="box", token=f"t{k}", folder="spam" if k % 2 else "inbox",
                folder_name="INBOX", sent_at=1.7e9 + k, seen_at=1.7e9 + k + 9, latency=9.0,
                receiver_delay=8.0, verdicts={"spf": "pass", "dkim": "fail"},
                dmarc_aligned=k % 2 == 0))
        elif k % 3 == 2:
            store.lost(relay, "box")
    return store


def render(store: ResultStore, dns: DNSStore, accept: str = "",
           canary: CanaryStore | None = None) -> tuple[bytes, str]:
    collector = ExporterCollector(store.snapshot, canary.snapshot if canary else None,
                                  dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    chunks, content_type = collector.render(registry, accept)
    return b"".join(chunks), content_type


def families_of(text: str) -> list[str]:
    """The exposition cut into families (each from its HELP line), sorted: the fast path
    writes the same families, possibly in another order."""
    body = text.removesuffix("# EOF\n")
    return sorted("# HELP " + part for part in body.split("# HELP ") if part)


class Reference:
    """prometheus_client's own rendering of the same snapshot's families."""

    def __init__(self, store: ResultStore, dns: DNSStore, canary: CanarySnapshot, *,
                 created: bool) -> None:
        self.store, self.dns, self.canary, self.created = store, dns, canary, created

    def collect(self) -> Iterator[Metric]:
        snap = self.store.snapshot()
        collector = ExporterCollector(lambda: snap)
        yield from (m for m in collector.collect() if m.name.startswith("smtp_exporter"))
        yield from relay_families(snap, created=self.created)
        yield from canary_families(self.canary)
        yield from dns_families(self.dns.snapshot())


def test_text_is_byte_for_byte_prometheus_clients() -> None:
    """Every family of the text exposition, label escaping and number formats included, is
    byte for byte what prometheus_client writes for the same relays, canaries and DNS
    results."""
    store, dns = fleet(40, hostile=True)
    canary = canaries(40)
    fast, content_type = render(store, dns, canary=canary)
    assert content_type.startswith("text/plain; version=0.0.4")
    reference = generate_latest(Reference(store, dns, canary.snapshot(), created=False)).decode()
    reference = re.sub(r"smtp_exporter_config_last_reload_success_timestamp_seconds \S+",
                       "", reference)
    text = re.sub(r"smtp_exporter_config_last_reload_success_timestamp_seconds \S+", "",
                  fast.decode())
    assert families_of(text) == families_of(reference)


def test_openmetrics_is_byte_for_byte_and_parses() -> None:
    """With Accept: OpenMetrics, the answer is what prometheus_client's OpenMetrics writer
    gives (failure counters with _created, one # EOF at the end), and its parser reads it."""
    store, dns = fleet(40, hostile=True)
    canary = canaries(40)
    fast, content_type = render(store, dns, OPENMETRICS, canary)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = fast.decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    reference = openmetrics_latest(  # type: ignore[no-untyped-call]
        Reference(store, dns, canary.snapshot(), created=True)).decode()
    strip = re.compile(r"smtp_exporter_config_last_reload_success_timestamp_seconds \S+")
    assert families_of(strip.sub("", text)) == families_of(strip.sub("", reference))
    assert "smtp_probe_failures_created{" in text
    parsed = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    names = {family.name for family in parsed}
    assert {"smtp_probe_failures", "smtp_probe_phase_duration_seconds",
            "smtp_canary_received", "smtp_dns_check_status"} <= names


def test_promtool_accepts_a_thousand_relays() -> None:
    """`promtool check metrics` accepts the text exposition of 1,000 relays (half of them
    with canaries)."""
    store, dns = fleet(1000)
    fast, _ = render(store, dns, canary=canaries(1000))
    assert fast.count(b"\nsmtp_probe_success{") == 1000
    assert_promtool_accepts(fast.decode())


def test_a_new_result_shows_at_the_next_scrape() -> None:
    """A relay's block is rendered again once its result changes, and a relay removed by a
    reload is gone from the next scrape; the others keep their values."""
    store, dns = fleet(3)
    collector = ExporterCollector(store.snapshot, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)

    def scrape() -> str:
        return b"".join(collector.render(registry, "")[0]).decode()

    before = scrape()
    assert value(before, "smtp_probe_success", relay="relay-1") == 1
    store.record(RelayResult(relay="relay-1", success=False, started_at=1.8e9, duration=9.0,
                             reason=Reason.TIMEOUT, hint="slow", failed_phase=Phase.GREETING))
    after = scrape()
    assert value(after, "smtp_probe_success", relay="relay-1") == 0
    assert value(after, "smtp_probe_failures_total", relay="relay-1", reason="timeout") == 1
    assert value(after, "smtp_probe_phase_duration_seconds", relay="relay-1", phase="tls") == 0
    assert value(after, "smtp_probe_success", relay="relay-0") == 1
    snap = store.snapshot()
    store.configure([v.info for n, v in snap.relays.items() if n != "relay-2"], warnings=(),
                    source="test")
    assert value(scrape(), "smtp_probes_total", relay="relay-2") is None


def test_gzip_of_chunks_is_one_stream() -> None:
    """The chunks compressed one by one make one gzip stream of the whole exposition."""
    store, dns = fleet(50)
    collector = ExporterCollector(store.snapshot, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    chunks, _ = collector.render(registry, "")
    assert gzip.decompress(b"".join(gzip_chunks(chunks))) == b"".join(chunks)


def test_sample_values_read_as_prometheus_clients() -> None:
    """Counts, durations, timestamps, a million probes and the special values are written as
    prometheus_client writes them (1.0, 0.25, 1.7e+09, 1e+06, +Inf, NaN)."""
    import math

    from prometheus_client.utils import floatToGoString

    from exporter.exposition import num

    for v in (0, 1, 3, 0.1, 1e-7, 123456.7, 999999.99, 1e6, 1234567, 1.7e9, -5, -1e9,
              math.inf, -math.inf, math.nan, 1e300, 2**53):
        assert num(v) == floatToGoString(v), v  # type: ignore[no-untyped-call]
