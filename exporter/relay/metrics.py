"""The relay probes' metric families, built from one ResultStore snapshot."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    Metric,
)

from exporter.exposition import Spec
from exporter.histogram import Histogram
from exporter.model import Phase, Reason
from exporter.peertext import clean
from exporter.relay.result import RelayResult
from exporter.relay.store import Snapshot

__all__ = ["RELAY_SPECS", "probe_families", "relay_families"]

# The longest hint label: the product's own sentences are shorter; nothing a server says can
# make a label longer (or invalid UTF-8, which would fail every scrape).
MAX_HINT_LABEL = 300


INFO = Spec("smtp_relay_info", "Configured relays; always 1.", "gauge",
            ("relay", "host", "port", "tls", "auth", "preset", "tls_verify", "expect"))
SUCCESS = Spec("smtp_probe_success",
               "1 if the last scheduled probe of the relay succeeded (or saw its expected "
               "failure).", "gauge", ("relay",))
DURATION = Spec("smtp_probe_duration_seconds", "Duration of the last scheduled probe.", "gauge",
                ("relay",))
LAST_RUN = Spec("smtp_probe_last_run_timestamp_seconds",
                "Unix time the last scheduled probe started; 0 before the first.", "gauge",
                ("relay",))
PROBES = Spec("smtp_probes_total", "Probes run since the exporter started.", "counter",
              ("relay",))
FAILURES = Spec("smtp_probe_failures_total",
                "Failed probes by reason; a reason's series appears at its first failure.",
                "counter", ("relay", "reason"))
FAILING = Spec("smtp_probe_last_failure_info",
               "1 for the reason of the current failure while the relay is failing, with its "
               "hint.", "gauge", ("relay", "reason", "phase", "hint", "cause"))
PHASES = Spec("smtp_probe_phase_duration_seconds",
              "Duration of each SMTP phase of the last scheduled probe, for every phase the "
              "relay's probes have reached; 0 for a phase the last one did not reach.", "gauge",
              ("relay", "phase"))
DURATION_HISTOGRAM = Spec("smtp_probe_total_duration_seconds",
                          "Duration of every scheduled probe.", "histogram", ("relay",))
PHASE_HISTOGRAM = Spec("smtp_probe_phase_latency_seconds",
                       "Duration of each SMTP phase over all scheduled probes, for the phases "
                       "listed in metrics.phase_histograms.", "histogram", ("relay", "phase"))
NOT_AFTER = Spec("smtp_tls_cert_not_after_timestamp_seconds",
                 "Unix time the relay's certificate expires, from the last probe that completed "
                 "TLS.", "gauge", ("relay",))
TLS_INFO = Spec("smtp_tls_info",
                "TLS version and cipher of the last probe that completed TLS; always 1.", "gauge",
                ("relay", "version", "cipher"))
VERIFIED = Spec("smtp_tls_cert_verified",
                "1 if the certificate was verified (chain and host name) on the last TLS probe.",
                "gauge", ("relay",))
TOKEN_EXPIRY = Spec("smtp_oauth2_token_expiry_timestamp_seconds",
                    "Unix time the relay's cached OAuth2 access token expires.", "gauge",
                    ("relay",))
TOKEN_FAILURES = Spec("smtp_oauth2_token_refresh_failures_total",
                      "Failed OAuth2 token refreshes.", "counter", ("relay",))
RELAY_SPECS = (INFO, SUCCESS, DURATION, LAST_RUN, PROBES, FAILURES, FAILING, PHASES,
               DURATION_HISTOGRAM, PHASE_HISTOGRAM, NOT_AFTER, TLS_INFO, VERIFIED, TOKEN_EXPIRY,
               TOKEN_FAILURES)


def relay_families(snap: Snapshot, *, created: bool = True) -> Iterator[Metric]:
    """Every relay's series as prometheus_client families; ``created`` adds the failure
    counters' creation times (OpenMetrics ``_created``)."""
    info, success, duration, last_run = INFO.gauge(), SUCCESS.gauge(), DURATION.gauge(), \
        LAST_RUN.gauge()
    probes, failures, failing, phases = PROBES.counter(), FAILURES.counter(), FAILING.gauge(), \
        PHASES.gauge()
    total, phase_hist = DURATION_HISTOGRAM.histogram(), PHASE_HISTOGRAM.histogram()
    not_after, tls_info, verified = NOT_AFTER.gauge(), TLS_INFO.gauge(), VERIFIED.gauge()
    token_expiry, token_failures = TOKEN_EXPIRY.gauge(), TOKEN_FAILURES.counter()
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
            if reason in view.failures:
                failures.add_metric([name, reason.value], view.failures[reason],
                                    created=view.failed_since[reason] if created else None)
        if last is not None and last.reason is not None:
            failing.add_metric(
                [name, last.reason.value, (last.failed_phase or ""),
                 clean(last.hint or "", limit=MAX_HINT_LABEL), last.cause or ""],
                1,
            )
        timed = last.phases if last else {}
        for phase in view.reached:
            phases.add_metric([name, phase.value], timed.get(phase, 0.0))
        total.add_metric([name], view.duration.cumulative(), view.duration.total)
        for phase in i.phase_histograms:
            hist = view.phases.get(phase) or Histogram.empty(i.phase_buckets)
            phase_hist.add_metric([name, phase.value], hist.cumulative(), hist.total)
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
    yield from (info, success, duration, last_run, probes, failures, failing, phases, total,
                phase_hist, not_after, tls_info, verified, token_expiry, token_failures)


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
