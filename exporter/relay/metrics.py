"""The relay probes' metric families, built from one ResultStore snapshot."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.histogram import Histogram
from exporter.model import Phase, Reason
from exporter.peertext import clean
from exporter.relay.result import RelayResult
from exporter.relay.store import Snapshot

__all__ = ["probe_families", "relay_families"]

# The longest hint label: the product's own sentences are shorter; nothing a server says can
# make a label longer (or invalid UTF-8, which would fail every scrape).
MAX_HINT_LABEL = 300


def relay_families(snap: Snapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "smtp_relay_info",
        "Configured relays; always 1.",
        labels=["relay", "host", "port", "tls", "auth", "preset", "tls_verify", "expect"],
    )
    success = GaugeMetricFamily(
        "smtp_probe_success",
        "1 if the last scheduled probe of the relay succeeded (or saw its expected failure).",
        labels=["relay"],
    )
    duration = GaugeMetricFamily(
        "smtp_probe_duration_seconds", "Duration of the last scheduled probe.", labels=["relay"]
    )
    last_run = GaugeMetricFamily(
        "smtp_probe_last_run_timestamp_seconds",
        "Unix time the last scheduled probe started; 0 before the first.",
        labels=["relay"],
    )
    probes = CounterMetricFamily(
        "smtp_probes_total", "Probes run since the exporter started.", labels=["relay"]
    )
    failures = CounterMetricFamily(
        "smtp_probe_failures_total", "Failed probes by reason.", labels=["relay", "reason"]
    )
    failing = GaugeMetricFamily(
        "smtp_probe_last_failure_info",
        "1 for the reason of the current failure while the relay is failing, with its hint.",
        labels=["relay", "reason", "phase", "hint", "cause"],
    )
    phases = HistogramMetricFamily(
        "smtp_probe_phase_duration_seconds",
        "Duration of each SMTP phase, over all probes.",
        labels=["relay", "phase"],
    )
    not_after = GaugeMetricFamily(
        "smtp_tls_cert_not_after_timestamp_seconds",
        "Unix time the relay's certificate expires, from the last probe that completed TLS.",
        labels=["relay"],
    )
    tls_info = GaugeMetricFamily(
        "smtp_tls_info",
        "TLS version and cipher of the last probe that completed TLS; always 1.",
        labels=["relay", "version", "cipher"],
    )
    verified = GaugeMetricFamily(
        "smtp_tls_cert_verified",
        "1 if the certificate was verified (chain and host name) on the last TLS probe.",
        labels=["relay"],
    )
    token_expiry = GaugeMetricFamily(
        "smtp_oauth2_token_expiry_timestamp_seconds",
        "Unix time the relay's cached OAuth2 access token expires.",
        labels=["relay"],
    )
    token_failures = CounterMetricFamily(
        "smtp_oauth2_token_refresh_failures_total",
        "Failed OAuth2 token refreshes.",
        labels=["relay"],
    )
    empty = Histogram()
    for name, view in sorted(snap.relays.items()):
        i = view.info
        info.add_metric(
            [name, i.host, str(i.port), i.tls, i.auth, i.preset, str(i.tls_verify).lower(),
             i.expect],
            1,
        )
        last = view.last
        success.add_metric([name], 1 if last and last.success else 0)
        duration.add_metric([name], last.duration if last else 0)
        last_run.add_metric([name], last.started_at if last else 0)
        probes.add_metric([name], view.probes)
        for reason in Reason:
            failures.add_metric([name, reason.value], view.failures.get(reason, 0))
        if last is not None and last.reason is not None:
            failing.add_metric(
                [name, last.reason.value, (last.failed_phase or ""),
                 clean(last.hint or "", limit=MAX_HINT_LABEL), last.cause or ""],
                1,
            )
        for phase in Phase:
            hist = view.phases.get(phase, empty)
            phases.add_metric([name, phase.value], hist.cumulative(), hist.total)
        tls = view.tls
        if tls is not None:
            if tls.not_after is not None:
                not_after.add_metric([name], tls.not_after)
            tls_info.add_metric([name, tls.version, tls.cipher], 1)
            verified.add_metric([name], 1 if tls.verified else 0)
        if i.oauth2:
            token_failures.add_metric([name], view.token_refresh_failures)
            if view.token_expiry is not None:
                token_expiry.add_metric([name], view.token_expiry)
    yield from (info, success, duration, last_run, probes, failures, failing, phases)
    yield from (not_after, tls_info, verified, token_expiry, token_failures)



def probe_families(result: RelayResult, *, timeout: float) -> Iterator[Metric]:
    """The families of one /probe answer: this probe only, no relay label (Prometheus adds
    the target as ``instance``); TLS facts under the names /metrics uses."""
    yield GaugeMetricFamily("smtp_probe_success",
                            "1 if this probe succeeded (or saw its expected failure).",
                            value=1 if result.success else 0)
    yield GaugeMetricFamily("smtp_probe_duration_seconds", "Duration of this probe.",
                            value=result.duration)
    yield GaugeMetricFamily("smtp_probe_timeout_seconds",
                            "The time this probe was given: the module's timeout, or less to "
                            "end within the scrape timeout.", value=timeout)
    phases = GaugeMetricFamily("smtp_probe_phase_duration_seconds",
                               "Duration of each SMTP phase of this probe; 0 for a phase it "
                               "did not reach.", labels=["phase"])
    for phase in Phase:
        phases.add_metric([phase.value], result.phases.get(phase, 0.0))
    yield phases
    failure = GaugeMetricFamily("smtp_probe_failure_info",
                                "1 for the reason and phase of this probe's failure.",
                                labels=["reason", "phase"])
    if result.reason is not None:
        failure.add_metric([result.reason.value, result.failed_phase or ""], 1)
    yield failure
    tls = result.tls
    if tls is None:
        return
    if tls.not_after is not None:
        yield GaugeMetricFamily("smtp_tls_cert_not_after_timestamp_seconds",
                                "Unix time the target's certificate expires.",
                                value=tls.not_after)
    info = GaugeMetricFamily("smtp_tls_info", "TLS version and cipher of this probe; always 1.",
                             labels=["version", "cipher"])
    info.add_metric([tls.version, tls.cipher], 1)
    yield info
    yield GaugeMetricFamily("smtp_tls_cert_verified",
                            "1 if the certificate was verified (chain and host name).",
                            value=1 if tls.verified else 0)
