"""The canary round trip's metric families, built from one CanarySnapshot per scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.canary.path import MAX_HOP_LABELS, hop_delays
from exporter.canary.store import AUTH_METHODS, AUTH_RESULTS, CanarySnapshot
from exporter.histogram import PHASE_BUCKETS, Histogram
from exporter.model import Phase, Reason
from exporter.peertext import clean

__all__ = ["canary_families", "mailbox_families", "pair_families", "path_families",
           "sender_families"]

# The longest hint label, as for smtp_probe_last_failure_info.
MAX_HINT_LABEL = 300

RM = ["relay", "mailbox"]


def canary_families(snap: CanarySnapshot) -> Iterator[Metric]:
    """Every canary series; each (relay, mailbox) pair has its counters from start-up."""
    yield from sender_families(snap)
    yield from pair_families(snap)
    yield from path_families(snap)
    yield from mailbox_families(snap)


def sender_families(snap: CanarySnapshot) -> Iterator[Metric]:
    sent = CounterMetricFamily("smtp_canary_sent_total",
                               "Canaries handed to the relay (accepted, or uncertain).",
                               labels=["relay"])
    uncertain = CounterMetricFamily(
        "smtp_canary_send_uncertain_total",
        "Sends whose connection failed after the message was handed over; still watched for.",
        labels=["relay"])
    failures = CounterMetricFamily("smtp_canary_send_failures_total",
                                   "Canary sends that failed, by reason.",
                                   labels=["relay", "reason"])
    phases = HistogramMetricFamily("smtp_canary_send_phase_duration_seconds",
                                   "Duration of each SMTP phase of canary sends.",
                                   labels=["relay", "phase"])
    failing = GaugeMetricFamily(
        "smtp_canary_send_last_failure_info",
        "1 for the reason of the last canary send while it failed, with its hint and cause.",
        labels=["relay", "reason", "phase", "hint", "cause"])
    last_send = GaugeMetricFamily("smtp_canary_last_send_timestamp_seconds",
                                  "Unix time the last canary send started; 0 before the first.",
                                  labels=["relay"])
    empty = Histogram.empty(PHASE_BUCKETS)
    for name, view in sorted(snap.senders.items()):
        sent.add_metric([name], view.sent)
        uncertain.add_metric([name], view.uncertain)
        for reason in Reason:
            failures.add_metric([name, reason.value], view.failures.get(reason, 0))
        for phase in (Phase.MAIL, Phase.RCPT, Phase.DATA):
            hist = view.phases.get(phase, empty)
            phases.add_metric([name, phase.value], hist.cumulative(), hist.total)
        last_send.add_metric([name], view.last.started_at if view.last else 0)
        last = view.last
        if last is not None and last.reason is not None:
            failing.add_metric([name, last.reason.value, last.failed_phase or "",
                                clean(last.hint or "", limit=MAX_HINT_LABEL), last.cause or ""],
                               1)
    yield from (sent, uncertain, failures, failing, phases, last_send)


def pair_families(snap: CanarySnapshot) -> Iterator[Metric]:
    received = CounterMetricFamily("smtp_canary_received_total",
                                   "Canaries seen in the mailbox, by folder.",
                                   labels=[*RM, "folder"])
    lost = CounterMetricFamily("smtp_canary_lost_total",
                               "Canaries not seen within their timeout (counted once).",
                               labels=RM)
    late = CounterMetricFamily("smtp_canary_late_total",
                               "Canaries seen after they were counted lost.", labels=RM)
    in_flight = GaugeMetricFamily("smtp_canary_in_flight",
                                  "Canaries sent and not yet seen or lost.", labels=RM)
    delivery = HistogramMetricFamily(
        "smtp_canary_delivery_duration_seconds",
        "Time from the relay accepting a canary to the watcher seeing it.", labels=RM)
    last_delivery = GaugeMetricFamily(
        "smtp_canary_last_delivery_duration_seconds",
        "Delivery time of the last canary seen; 0 before the first.", labels=RM)
    receiver = GaugeMetricFamily(
        "smtp_canary_last_receiver_delay_seconds",
        "From the relay accepting the last canary to the receiving server storing it "
        "(its INTERNALDATE): the delivery time without the watcher's detection delay.",
        labels=RM)
    last_seen = GaugeMetricFamily("smtp_canary_last_received_timestamp_seconds",
                                  "Unix time the last canary was seen; 0 before the first.",
                                  labels=RM)
    auth = GaugeMetricFamily(
        "smtp_canary_auth_result",
        "1 for the verdict of each method in the last canary's trusted Authentication-Results.",
        labels=[*RM, "method", "result"])
    aligned = GaugeMetricFamily(
        "smtp_canary_dmarc_aligned",
        "1 if a passing SPF or DKIM domain of the last canary aligns with its From domain.",
        labels=RM)
    folder = GaugeMetricFamily("smtp_canary_last_folder_info",
                               "The folder the last canary landed in; always 1.",
                               labels=[*RM, "folder"])
    spam = GaugeMetricFamily("smtp_canary_spam_score",
                             "Spam score the receiver gave the last canary, per filter.",
                             labels=[*RM, "source"])
    for (relay, mailbox), view in sorted(snap.pairs.items()):
        labels = [relay, mailbox]
        for name in sorted({"inbox", "spam", *view.received}):
            received.add_metric([*labels, name], view.received.get(name, 0))
        lost.add_metric(labels, view.lost)
        late.add_metric(labels, view.late)
        in_flight.add_metric(labels, view.in_flight)
        delivery.add_metric(labels, view.delivery.cumulative(), view.delivery.total)
        last = view.last
        last_delivery.add_metric(labels, last.latency if last else 0)
        last_seen.add_metric(labels, last.seen_at if last else 0)
        verdicts = last.verdicts if last else {}
        for method in AUTH_METHODS:
            current = verdicts.get(method, "none")
            for result in AUTH_RESULTS:
                auth.add_metric([*labels, method, result], 1 if result == current else 0)
        aligned.add_metric(labels, 1 if last and last.dmarc_aligned else 0)
        if last is not None:
            if last.receiver_delay is not None:
                receiver.add_metric(labels, last.receiver_delay)
            folder.add_metric([*labels, last.folder], 1)
            for source, score in sorted(last.spam_scores.items()):
                spam.add_metric([*labels, source], score)
    yield from (received, lost, late, in_flight, delivery, last_delivery, receiver, last_seen)
    yield from (auth, aligned, folder, spam)


def path_families(snap: CanarySnapshot) -> Iterator[Metric]:
    hops = GaugeMetricFamily(
        "smtp_canary_hops",
        "Received headers of the last canary seen: its hops from the relay to the mailbox.",
        labels=RM)
    delay = GaugeMetricFamily(
        "smtp_canary_hop_delay_seconds",
        "Time the last canary spent before each hop (hop 1 from the relay's accept, the last "
        f"to the mailbox's INTERNALDATE); hop {MAX_HOP_LABELS} holds the sum of any later hops.",
        labels=[*RM, "hop"])
    encrypted = GaugeMetricFamily(
        "smtp_canary_path_encrypted",
        "1 if every hop of the last canary after the relay says it came over TLS.", labels=RM)
    skew = CounterMetricFamily(
        "smtp_canary_hop_clock_skew_total",
        "Hops stamped a second or more before the hop ahead of them (clock skew), counted as "
        "no delay.", labels=RM)
    failures = CounterMetricFamily(
        "smtp_canary_hop_parse_failures_total",
        "Received headers of canaries that did not parse (kept raw on the status page).",
        labels=RM)
    for (relay, mailbox), view in sorted(snap.pairs.items()):
        labels = [relay, mailbox]
        skew.add_metric(labels, view.hop_clock_skew)
        failures.add_metric(labels, view.hop_parse_failures)
        path = view.last.path if view.last else None
        if path is None:
            continue
        hops.add_metric(labels, len(path.hops))
        encrypted.add_metric(labels, 1 if path.encrypted else 0)
        for hop, seconds in hop_delays(path):
            delay.add_metric([*labels, hop], seconds)
    yield from (hops, delay, encrypted, skew, failures)


def mailbox_families(snap: CanarySnapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("smtp_mailbox_up",
                           "1 while the watcher is logged in to the mailbox.", labels=["mailbox"])
    idle = GaugeMetricFamily("smtp_mailbox_idle_supported",
                             "1 if the IMAP server offers IDLE (0 also before the first login).",
                             labels=["mailbox"])
    expiry = GaugeMetricFamily("smtp_mailbox_oauth2_token_expiry_timestamp_seconds",
                               "Unix time the mailbox's cached OAuth2 access token expires.",
                               labels=["mailbox"])
    for name, view in sorted(snap.mailboxes.items()):
        up.add_metric([name], 1 if view.up else 0)
        idle.add_metric([name], 1 if view.idle_supported else 0)
        if view.uses_oauth2 and view.token_expiry is not None:
            expiry.add_metric([name], view.token_expiry)
    errors = CounterMetricFamily(
        "smtp_canary_state_write_errors_total",
        "Failed writes of the canary state file (canaries stay in memory meanwhile).")
    errors.add_metric([], snap.state_write_errors)
    refused = CounterMetricFamily(
        "smtp_canary_state_refused_total",
        "Canary state files not loaded: not owned by this user, or writable by others.")
    refused.add_metric([], snap.state_refused)
    yield from (up, idle, expiry, errors, refused)
