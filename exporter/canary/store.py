"""CanaryStore: sends, arrivals, losses and mailbox health, handed out as immutable snapshots."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.canary.path import DeliveryPath
from exporter.canary.result import CanarySent
from exporter.histogram import PHASE_BUCKETS, Histogram
from exporter.model import Phase, Reason

__all__ = [
    "AUTH_METHODS",
    "AUTH_RESULTS",
    "DELIVERY_BUCKETS",
    "ArrivalReport",
    "CanarySnapshot",
    "CanaryStore",
    "MailboxView",
    "PairView",
    "SenderView",
]

# Seconds from the relay accepting a canary to the watcher seeing it: a healthy relay
# delivers in a few seconds, a queued one in minutes.
DELIVERY_BUCKETS: tuple[float, ...] = (
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
)
AUTH_METHODS = ("spf", "dkim", "dmarc", "arc")
AUTH_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror",
                "policy")


@dataclass(frozen=True, slots=True)
class ArrivalReport:
    """A canary as found in a mailbox, judged."""

    relay: str
    mailbox: str
    token: str
    folder: str
    folder_name: str
    sent_at: float
    seen_at: float
    latency: float
    receiver_delay: float | None
    verdicts: Mapping[str, str]
    dmarc_aligned: bool
    dkim_domains: tuple[tuple[str, str], ...] = ()
    spf_domain: str | None = None
    trusted_header: str | None = None
    spam_scores: Mapping[str, float] = field(default_factory=dict)
    late: bool = False
    path: DeliveryPath | None = None  # its Received headers, relay first


@dataclass(frozen=True, slots=True)
class PairView:
    """One relay's canaries to one mailbox."""

    relay: str
    mailbox: str
    received: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0
    late: int = 0
    in_flight: int = 0
    delivery: Histogram = field(default_factory=lambda: Histogram.empty(DELIVERY_BUCKETS))
    last: ArrivalReport | None = None
    recent: tuple[float, ...] = ()  # the last 60 delivery times, for the status page
    hop_clock_skew: int = 0  # hops stamped before the hop ahead of them, over every canary
    hop_parse_failures: int = 0  # Received headers that did not parse, over every canary


@dataclass(frozen=True, slots=True)
class SenderView:
    """One relay's canary sends."""

    relay: str
    sent: int = 0
    uncertain: int = 0
    failures: Mapping[Reason, int] = field(default_factory=dict)
    phases: Mapping[Phase, Histogram] = field(default_factory=dict)
    last: CanarySent | None = None


@dataclass(frozen=True, slots=True)
class MailboxView:
    """A canary mailbox's health as its watcher last reported it."""

    name: str
    up: bool = False
    idle_supported: bool | None = None
    error: str | None = None
    folders: tuple[tuple[str, str], ...] = ()
    checked_at: float = 0.0
    token_expiry: float | None = None
    uses_oauth2: bool = False


@dataclass(frozen=True, slots=True)
class CanarySnapshot:
    senders: Mapping[str, SenderView]
    pairs: Mapping[tuple[str, str], PairView]
    mailboxes: Mapping[str, MailboxView]
    state_write_errors: int = 0
    state_error: str | None = None
    state_refused: int = 0


class CanaryStore:
    """Thread-safe like ResultStore: the event loop records, the HTTP thread reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._senders: dict[str, SenderView] = {}
        self._pairs: dict[tuple[str, str], PairView] = {}
        self._mailboxes: dict[str, MailboxView] = {}
        self._state_errors = 0
        self._state_error: str | None = None
        self._state_refused = 0

    def configure(self, pairs: Iterable[tuple[str, str]], mailboxes: Iterable[tuple[str, bool]]
                  ) -> None:
        """Adopt the configured (relay, mailbox) pairs and mailboxes; kept ones keep counts."""
        with self._lock:
            wanted = list(pairs)
            self._pairs = {p: self._pairs.get(p) or PairView(*p) for p in wanted}
            relays = {r for r, _ in wanted}
            self._senders = {r: self._senders.get(r) or SenderView(r) for r in sorted(relays)}
            self._mailboxes = {
                name: replace(self._mailboxes[name], uses_oauth2=oauth2)
                if name in self._mailboxes else MailboxView(name, uses_oauth2=oauth2)
                for name, oauth2 in mailboxes
            }

    def sent(self, result: CanarySent) -> None:
        with self._lock:
            view = self._senders.get(result.relay)
            if view is None:
                return
            failures = dict(view.failures)
            if result.reason is not None:
                failures[result.reason] = failures.get(result.reason, 0) + 1
            phases = dict(view.phases)
            for phase, seconds in result.phases.items():
                phases[phase] = phases.get(phase, Histogram.empty(PHASE_BUCKETS)).observe(seconds)
            self._senders[result.relay] = replace(
                view,
                sent=view.sent + (1 if result.success or result.uncertain else 0),
                uncertain=view.uncertain + (1 if result.uncertain else 0),
                failures=failures,
                phases=phases,
                last=result,
            )

    def arrived(self, report: ArrivalReport) -> None:
        key = (report.relay, report.mailbox)
        with self._lock:
            view = self._pairs.get(key)
            if view is None:
                return
            if report.late:
                self._pairs[key] = replace(view, late=view.late + 1)
                return
            received = dict(view.received)
            received[report.folder] = received.get(report.folder, 0) + 1
            path = report.path
            self._pairs[key] = replace(
                view, received=received, delivery=view.delivery.observe(report.latency),
                last=report, recent=(*view.recent[-59:], report.latency),
                hop_clock_skew=view.hop_clock_skew + (path.skewed if path else 0),
                hop_parse_failures=view.hop_parse_failures + (path.parse_failures if path else 0),
            )

    def lost(self, relay: str, mailbox: str) -> None:
        with self._lock:
            view = self._pairs.get((relay, mailbox))
            if view is not None:
                self._pairs[(relay, mailbox)] = replace(view, lost=view.lost + 1)

    def set_in_flight(self, counts: Mapping[tuple[str, str], int]) -> None:
        with self._lock:
            for key, view in self._pairs.items():
                n = counts.get(key, 0)
                if view.in_flight != n:
                    self._pairs[key] = replace(view, in_flight=n)

    def mailbox_status(self, name: str, **fields: object) -> None:
        with self._lock:
            view = self._mailboxes.get(name)
            if view is not None:
                self._mailboxes[name] = replace(view, **fields)  # type: ignore[arg-type]

    def state_errors(self, count: int, error: str | None) -> None:
        with self._lock:
            self._state_errors, self._state_error = count, error

    def state_file_refused(self) -> None:
        """A state file was not loaded: not this user's, or writable by others."""
        with self._lock:
            self._state_refused += 1

    def snapshot(self) -> CanarySnapshot:
        with self._lock:
            return CanarySnapshot(dict(self._senders), dict(self._pairs), dict(self._mailboxes),
                                  self._state_errors, self._state_error, self._state_refused)
