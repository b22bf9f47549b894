"""Each relay's block of /metrics sample lines, rendered once per result and kept until the
relay's view changes; a scrape joins the blocks family by family."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence

from exporter.exposition import Spec, esc, num
from exporter.histogram import Histogram
from exporter.model import Reason
from exporter.peertext import clean
from exporter.relay.metrics import FAILURES, MAX_HINT_LABEL, RELAY_SPECS
from exporter.relay.store import RelayView, Snapshot

__all__ = ["RelayBlocks", "relay_block"]

_REASONS = tuple(Reason)


@functools.cache
def _bounds(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(f'le="{bound!r}",' for bound in bounds)


def _histogram(name: str, hist: Histogram, after: str) -> str:
    """Bucket, count and sum lines; ``after`` is the labels sorting after le."""
    out = []
    running = 0
    bucket = name + "_bucket{"
    for le, n in zip(_bounds(hist.bounds), hist.counts, strict=False):
        running += n
        out.append(f"{bucket}{le}{after}}} {num(running)}\n")
    count = num(hist.count)
    out.append(f'{bucket}le="+Inf",{after}}} {count}\n'
               f"{name}_count{{{after}}} {count}\n{name}_sum{{{after}}} {num(hist.total)}\n")
    return "".join(out)


def relay_block(name: str, view: RelayView) -> tuple[str, ...]:
    """The relay's sample lines, one string per family of RELAY_SPECS, exactly as
    prometheus_client writes relay_families in the text format, then the failures' lines for
    OpenMetrics (with _created)."""
    r = f'relay="{esc(name)}"'
    i = view.info
    last = view.last
    info = (f'smtp_relay_info{{auth="{esc(i.auth)}",expect="{esc(i.expect)}",'
            f'host="{esc(i.host)}",port="{i.port}",preset="{esc(i.preset)}",{r},'
            f'tls="{esc(i.tls)}",tls_verify="{str(i.tls_verify).lower()}"}} 1.0\n')
    ok = "1.0" if last and last.success else "0.0"
    duration = num(last.duration) if last else "0.0"
    started = num(last.started_at) if last else "0.0"
    failures, created = [], []
    for reason in _REASONS:
        count = view.failures.get(reason)
        if count is not None:
            labels = f'{{reason="{reason}",{r}}}'
            line = f"smtp_probe_failures_total{labels} {num(count)}\n"
            failures.append(line)
            created.append(f"{line}smtp_probe_failures_created{labels} "
                           f"{num(view.failed_since[reason])}\n")
    failing = ""
    if last is not None and last.reason is not None:
        hint = esc(clean(last.hint or "", limit=MAX_HINT_LABEL))
        failing = (f'smtp_probe_last_failure_info{{cause="{esc(last.cause or "")}",'
                   f'hint="{hint}",phase="{last.failed_phase or ""}",'
                   f'reason="{last.reason.value}",{r}}} 1.0\n')
    timed = last.phases if last else {}
    phases = "".join(f'smtp_probe_phase_duration_seconds{{phase="{p}",{r}}} '
                     f"{num(timed.get(p, 0.0))}\n" for p in view.reached)
    total = _histogram("smtp_probe_total_duration_seconds", view.duration, r)
    phase_hist = "".join(
        _histogram("smtp_probe_phase_latency_seconds",
                   view.phases.get(p) or Histogram.empty(i.phase_buckets),
                   f'phase="{p}",{r}')
        for p in i.phase_histograms)
    not_after = tls_info = verified = ""
    tls = view.tls
    if tls is not None:
        if tls.not_after is not None:
            not_after = f"smtp_tls_cert_not_after_timestamp_seconds{{{r}}} {num(tls.not_after)}\n"
        tls_info = (f'smtp_tls_info{{cipher="{esc(tls.cipher)}",{r},'
                    f'version="{esc(tls.version)}"}} 1.0\n')
        verified = f"smtp_tls_cert_verified{{{r}}} {'1.0' if tls.verified else '0.0'}\n"
    expiry = token_failures = ""
    if i.oauth2:
        token_failures = (f"smtp_oauth2_token_refresh_failures_total{{{r}}} "
                          f"{num(view.token_refresh_failures)}\n")
        if view.token_expiry is not None:
            expiry = (f"smtp_oauth2_token_expiry_timestamp_seconds{{{r}}} "
                      f"{num(view.token_expiry)}\n")
    return (info, f"smtp_probe_success{{{r}}} {ok}\n",
            f"smtp_probe_duration_seconds{{{r}}} {duration}\n",
            f"smtp_probe_last_run_timestamp_seconds{{{r}}} {started}\n",
            f"smtp_probes_total{{{r}}} {num(view.probes)}\n", "".join(failures), failing,
            phases, total, phase_hist, not_after, tls_info, verified, expiry, token_failures,
            "".join(created))


_FAILURES = RELAY_SPECS.index(FAILURES)
_OPENMETRICS_FAILURES = len(RELAY_SPECS)


class RelayBlocks:
    """Rendered blocks by relay, each kept while its (immutable) view is the current one;
    one block serves both formats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[RelayView, tuple[str, ...]]] = {}

    def families(self, snap: Snapshot, *,
                 openmetrics: bool) -> Iterator[tuple[Spec, Sequence[str]]]:
        """(spec, blocks) per relay family, relays sorted by name, rendering only relays
        whose view changed since the last scrape."""
        with self._lock:
            old = self._cache
            fresh: dict[str, tuple[RelayView, tuple[str, ...]]] = {}
            blocks = []
            for name, view in sorted(snap.relays.items()):
                entry = old.get(name)
                if entry is None or entry[0] is not view:
                    entry = (view, relay_block(name, view))
                fresh[name] = entry
                blocks.append(entry[1])
            self._cache = fresh
        for index, spec in enumerate(RELAY_SPECS):
            if openmetrics and index == _FAILURES:
                index = _OPENMETRICS_FAILURES
            yield spec, [block[index] for block in blocks if block[index]]
