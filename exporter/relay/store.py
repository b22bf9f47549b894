"""ResultStore: the latest result per relay, counters and histograms, handed out as snapshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.config import ONE_SHARD, Shard
from exporter.histogram import DURATION_BUCKETS, PHASE_BUCKETS, Histogram
from exporter.model import Phase, Reason, TLSInfo
from exporter.relay.history import History
from exporter.relay.result import RelayResult

__all__ = [
    "RelayInfo",
    "RelayView",
    "ResultStore",
    "Snapshot",
]

RECENT = 60  # probes the status page's chart shows per relay
NO_HISTORY = History(RECENT)
EMPTY_DURATION = Histogram.empty(DURATION_BUCKETS)


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """Static facts about a configured relay, for labels and the status page."""

    name: str
    host: str
    port: int
    tls: str
    auth: str
    preset: str = ""
    tls_verify: bool = True
    expect: str = ""
    oauth2: bool = False
    phase_histograms: tuple[Phase, ...] = ()  # opt-in (metrics.phase_histograms)
    phase_buckets: tuple[float, ...] = PHASE_BUCKETS


@dataclass(frozen=True, slots=True)
class RelayView:
    """Everything known about one relay, immutable: replaced whole on every result."""

    info: RelayInfo
    last: RelayResult | None = None
    last_failure: RelayResult | None = None
    probes: int = 0
    failures: Mapping[Reason, int] = field(default_factory=dict)  # reasons seen, no zeros
    failed_since: Mapping[Reason, float] = field(default_factory=dict)  # first failure's start
    phases: Mapping[Phase, Histogram] = field(default_factory=dict)  # the opt-in ones only
    duration: Histogram = EMPTY_DURATION
    reached: tuple[Phase, ...] = ()  # every phase a probe reached, in Phase order
    recent: History = NO_HISTORY  # the last probes, compact: no transcripts
    tls: TLSInfo | None = None
    token_expiry: float | None = None
    token_refresh_failures: int = 0
    token_error: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape or one status page render sees."""

    relays: Mapping[str, RelayView]
    reload_ok: bool
    reload_ok_at: float
    warnings: tuple[str, ...]
    config_source: str
    started_at: float
    instance: str = ""
    location: str = ""
    shard: Shard = ONE_SHARD


class ResultStore:
    """Thread-safe: probes record on the event loop, the HTTP thread takes snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._relays: dict[str, RelayView] = {}
        self._reload_ok = False
        self._reload_ok_at = 0.0
        self._warnings: tuple[str, ...] = ()
        self._source = ""
        self._instance = ""
        self._location = ""
        self._shard = ONE_SHARD
        self._started_at = time.time()

    def configure(
        self, infos: Iterable[RelayInfo], *, warnings: Iterable[str], source: str,
        instance: str = "", location: str = "", shard: Shard = ONE_SHARD,
    ) -> None:
        """Adopt a new relay set: new relays start at zero, removed ones vanish, kept ones keep
        their counters."""
        with self._lock:
            fresh: dict[str, RelayView] = {}
            for info in infos:
                old = self._relays.get(info.name)
                fresh[info.name] = (replace(old, info=info, phases=_kept(old.phases, info))
                                    if old else RelayView(info=info))
            self._relays = fresh
            self._warnings = tuple(warnings)
            self._source = source
            self._instance = instance
            self._location = location
            self._shard = shard
            self._reload_ok = True
            self._reload_ok_at = time.time()

    def reload_failed(self) -> None:
        with self._lock:
            self._reload_ok = False

    def record(self, result: RelayResult) -> None:
        with self._lock:
            view = self._relays.get(result.relay)
            if view is None:  # removed by a reload while its probe ran
                return
            info = view.info
            phases = view.phases
            if info.phase_histograms:
                grown = dict(phases)
                for phase in info.phase_histograms:
                    seconds = result.phases.get(phase)
                    if seconds is not None:
                        hist = grown.get(phase) or Histogram.empty(info.phase_buckets)
                        grown[phase] = hist.observe(seconds)
                phases = grown
            reached = view.reached
            if not reached or any(phase not in reached for phase in result.phases):
                reached = tuple(p for p in Phase if p in reached or p in result.phases)
            failures, failed_since = view.failures, view.failed_since
            if result.reason is not None:
                failures = {**failures, result.reason: failures.get(result.reason, 0) + 1}
                if result.reason not in failed_since:
                    failed_since = {**failed_since, result.reason: result.started_at}
            self._relays[result.relay] = replace(
                view,
                last=result,
                last_failure=view.last_failure if result.success else result,
                probes=view.probes + 1,
                failures=failures,
                failed_since=failed_since,
                phases=phases,
                duration=view.duration.observe(result.duration),
                reached=reached,
                recent=view.recent.add(result),
                tls=result.tls or view.tls,
            )

    def record_token(
        self, relay: str, *, expires_at: float | None, failures: int, error: str | None
    ) -> None:
        with self._lock:
            view = self._relays.get(relay)
            if view is not None:
                self._relays[relay] = replace(
                    view, token_expiry=expires_at, token_refresh_failures=failures,
                    token_error=error,
                )

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                relays=dict(self._relays),
                reload_ok=self._reload_ok,
                reload_ok_at=self._reload_ok_at,
                warnings=self._warnings,
                config_source=self._source,
                started_at=self._started_at,
                instance=self._instance,
                location=self._location,
                shard=self._shard,
            )


def _kept(phases: Mapping[Phase, Histogram], info: RelayInfo) -> dict[Phase, Histogram]:
    """The phase histograms a reload keeps: those still listed, with the same bounds."""
    return {phase: hist for phase, hist in phases.items()
            if phase in info.phase_histograms and hist.bounds == info.phase_buckets}
