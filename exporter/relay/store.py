"""ResultStore: the latest result per relay, counters and histograms, handed out as snapshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.config import ONE_SHARD, Shard
from exporter.histogram import Histogram
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


@dataclass(frozen=True, slots=True)
class RelayView:
    """Everything known about one relay, immutable: replaced whole on every result."""

    info: RelayInfo
    last: RelayResult | None = None
    last_failure: RelayResult | None = None
    probes: int = 0
    failures: Mapping[Reason, int] = field(default_factory=dict)
    phases: Mapping[Phase, Histogram] = field(default_factory=dict)
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
                fresh[info.name] = replace(old, info=info) if old else RelayView(info=info)
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
            phases = dict(view.phases)
            for phase, seconds in result.phases.items():
                phases[phase] = phases.get(phase, Histogram()).observe(seconds)
            failures = view.failures
            if result.reason is not None:
                failures = {**failures, result.reason: failures.get(result.reason, 0) + 1}
            self._relays[result.relay] = replace(
                view,
                last=result,
                last_failure=view.last_failure if result.success else result,
                probes=view.probes + 1,
                failures=failures,
                phases=phases,
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
