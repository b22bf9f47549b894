"""The one place results become metrics: a collector that asks each feature for its metric
families, built fresh from one snapshot per scrape, and renders /metrics from the features'
cached per-relay blocks."""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.canary import CanaryBlocks, CanarySnapshot, canary_families, mailbox_families
from exporter.dns import DNSBlocks, DNSSnapshot, dns_domain_families, dns_families
from exporter.exposition import join_blocks
from exporter.histogram import Histogram
from exporter.relay import RelayBlocks, Snapshot, relay_families
from exporter.tasks import LagHistogram, SchedulingSnapshot

__all__ = ["ExporterCollector"]

_EOF = b"# EOF\n"


class ExporterCollector(Collector):
    """Builds fresh metric families from one snapshot, so removed relays vanish at once."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        canaries: Callable[[], CanarySnapshot] | None = None,
        dns: Callable[[], DNSSnapshot] | None = None,
        *,
        scheduling: Callable[[], SchedulingSnapshot] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._canaries = canaries
        self._dns = dns
        self._scheduling = scheduling
        self._blocks_only = threading.local()  # set while render() asks the registry
        self._relay_blocks = RelayBlocks()
        self._dns_blocks = DNSBlocks()
        self._canary_blocks = CanaryBlocks()

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _exporter_families(snap)
        if self._scheduling is not None:
            yield from _scheduling_families(self._scheduling())
        blocks_only = getattr(self._blocks_only, "on", False)
        if not blocks_only:
            yield from relay_families(snap, created=False)
        if self._canaries is not None:
            yield from (mailbox_families if blocks_only else canary_families)(self._canaries())
        if self._dns is not None:
            yield from (dns_domain_families if blocks_only else dns_families)(self._dns())

    def render(self, registry: CollectorRegistry, accept: str) -> tuple[list[bytes], str]:
        """/metrics for the Accept header: the registry's small families through
        prometheus_client, and the relay-labelled ones (relay probes, canaries, relay DNS
        checks) joined from blocks rendered once per change. Returns UTF-8 chunks and the
        content type."""
        encoder, content_type = choose_encoder(accept)
        openmetrics = content_type.startswith("application/openmetrics-text")
        self._blocks_only.on = True
        try:
            head = encoder(registry)
        finally:
            self._blocks_only.on = False
        families = list(self._relay_blocks.families(self._snapshot(), openmetrics=openmetrics))
        if self._canaries is not None:
            families += self._canary_blocks.families(self._canaries())
        if self._dns is not None:
            families += self._dns_blocks.families(self._dns())
        chunks = [head.removesuffix(_EOF) if openmetrics else head]
        chunks += join_blocks(families, openmetrics=openmetrics)
        if openmetrics:
            chunks.append(_EOF)
        return chunks, content_type


def _exporter_families(snap: Snapshot) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "smtp_exporter_build_info",
        "The exporter's version and the Python it runs on; always 1.",
        labels=["version", "python_version"],
    )
    build.add_metric([__version__, platform.python_version()], 1)
    yield build
    yield GaugeMetricFamily(
        "smtp_exporter_config_last_reload_successful",
        "1 if the last configuration load or reload succeeded, 0 if it was refused.",
        value=1 if snap.reload_ok else 0,
    )
    yield GaugeMetricFamily(
        "smtp_exporter_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load or reload.",
        value=snap.reload_ok_at,
    )
    shard = GaugeMetricFamily(
        "smtp_exporter_shard_info",
        "Which shard of the relays this process probes (--shard of --total-shards); always 1.",
        labels=["shard", "total_shards"],
    )
    shard.add_metric([str(snap.shard.index), str(snap.shard.total)], 1)
    yield shard
    yield GaugeMetricFamily(
        "smtp_exporter_config_warnings",
        "Number of warnings the running configuration raised (see the status page).",
        value=len(snap.warnings),
    )


def _buckets(hist: LagHistogram) -> list[tuple[str, float]]:
    return Histogram(hist.bounds, hist.counts, hist.total).cumulative()


def _scheduling_families(snap: SchedulingSnapshot) -> Iterator[Metric]:
    lag = HistogramMetricFamily(
        "smtp_exporter_schedule_lag_seconds",
        "How late scheduled work started after its planned time, a wait for a "
        "max_concurrent_probes slot included: kind is probe, canary or dns.",
        labels=["kind"],
    )
    for kind, hist in sorted(snap.lag.items()):
        lag.add_metric([kind], _buckets(hist), hist.total)
    yield lag
    loop = HistogramMetricFamily(
        "smtp_exporter_event_loop_lag_seconds",
        "How late a timer on the event loop fired: time the loop was held by other work, "
        "which delays every probe's timing too.",
    )
    loop.add_metric([], _buckets(snap.loop_lag), snap.loop_lag.total)
    yield loop
    yield GaugeMetricFamily(
        "smtp_exporter_probes_in_flight",
        "Relay probes running now (scheduled and /probe), each holding a "
        "max_concurrent_probes slot.",
        value=snap.probes_in_flight,
    )
