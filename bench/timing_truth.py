"""Timing truth: the exporter's measured phases against what a relay in another process logged.

bench/truth_relay.py delays its greeting, EHLO reply and AUTH reply (20, 50 and 200 ms) and
logs, on CLOCK_MONOTONIC, when it accepted each connection, when each command arrived (the
kernel's receive timestamp) and when it sent each reply. This process probes it with the
exporter's own prober (STARTTLS + AUTH PLAIN) and reports measured minus true per phase.

Each row starts N probes at the same instant (N relays all due at once: the worst case the
scheduler allows), gated by the scheduler's concurrency limit (max_concurrent_probes, 64 by
default), as the exporter does. "+ scrape" rows do the same while another process fetches
/metrics from the exporter's own web server (in this process, holding all results) back to
back. Only 127.0.0.1 is used.

    python bench/timing_truth.py [--rows 1,100,1000,100s,1000s] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    TruthRelay,
    load,
    load_average,
    pct,
    relay_config,
    truth_relay,
    write_json,
)

from exporter.app import relay_infos
from exporter.config import Config
from exporter.metrics import ExporterCollector
from exporter.model import Phase
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from exporter.relay.store import ResultStore
from exporter.smtp.session import SMTPSession
from exporter.web.server import WebServer

PHASES = {"greeting": Phase.GREETING, "ehlo": Phase.EHLO, "auth": Phase.AUTH}

# Which side is late, for the greeting: the relay's accept() against the moment the
# exporter's session says the TCP handshake completed (both CLOCK_MONOTONIC). The relay's
# truth starts at its accept(); when a busy machine wakes the relay late, that lateness
# shows as greeting error without being the exporter's. A diagnostic only: the session's
# greeting step is wrapped to read its stamp, nothing is changed.
_CONNECTED: dict[str, float] = {}
_greeting = SMTPSession._greeting


async def _recording_greeting(self: SMTPSession, proto: Any) -> None:
    await _greeting(self, proto)
    _CONNECTED[self.relay.name] = proto.connected_at


SMTPSession._greeting = _recording_greeting  # type: ignore[method-assign]
# Rounds per row, so each row has enough probes for a p99 (single relay: one after another).
ROUNDS = {1: 100, 10: 20, 100: 4, 1000: 1}

SCRAPER = """
import os, sys, time, urllib.request
url, stop = sys.argv[1], sys.argv[2]
n = size = 0
while not os.path.exists(stop):
    with urllib.request.urlopen(url, timeout=30) as r:
        size = len(r.read())
    n += 1
print(n, size)
"""


async def _wave(config: Config, store: ResultStore) -> list[RelayResult]:
    sem = asyncio.Semaphore(config.max_concurrent_probes)

    async def one(i: int) -> RelayResult:
        async with sem:
            result = await probe_relay(config.relays[i])
        store.record(result)
        return result

    return await asyncio.gather(*(one(i) for i in range(len(config.relays))))


def _pair(results: list[RelayResult], truths: list[dict[str, object]]) -> dict[str, list[float]]:
    """measured - true per phase, in seconds; probes and log lines paired by EHLO name."""
    by_name = {str(t.get("name", "")).split(".")[0]: t for t in truths}
    errors: dict[str, list[float]] = {k: [] for k in [*PHASES, "relay_late"]}
    for r in results:
        truth = by_name.get(r.relay)
        if not r.success or truth is None:
            continue
        if r.relay in _CONNECTED and "accepted_at" in truth:
            errors["relay_late"].append(float(truth["accepted_at"])  # type: ignore[arg-type]
                                        - _CONNECTED[r.relay])
        for key, phase in PHASES.items():
            if key in truth and phase in r.phases:
                errors[key].append(r.phases[phase] - float(truth[key]))  # type: ignore[arg-type]
    return errors


async def _row(relay: TruthRelay, count: int, scrape: bool) -> dict[str, object]:
    stop = str(relay.log.parent / f"stop-scraping-{count}")
    config = load(relay_config(relay, count))
    store = ResultStore()
    store.configure(relay_infos(config), warnings=[], source="bench")
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(ExporterCollector(store.snapshot))
    web = WebServer(("127.0.0.1", 0), registry=registry, snapshot=store.snapshot,
                    reload=lambda: (False, "no"), ready=lambda: True)
    web.start()
    scraper = None
    errors: dict[str, list[float]] = {k: [] for k in [*PHASES, "relay_late"]}
    failed = probes = 0
    relay.new_lines()
    try:
        if scrape:  # fill the store first, so the scrapes carry every relay's series
            await _wave(config, store)
            relay.new_lines()
            scraper = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{web.port}/metrics", stop],
                stdout=subprocess.PIPE, text=True)
            await asyncio.sleep(0.5)
        started = time.monotonic()
        for _ in range(ROUNDS.get(count, 1)):
            results = await _wave(config, store)
            await asyncio.sleep(0.05)
            paired = _pair(results, relay.new_lines())
            for key in errors:
                errors[key].extend(paired[key])
            probes += len(results)
            failed += sum(not r.success for r in results)
        wall = time.monotonic() - started
    finally:
        scrapes = ""
        if scraper is not None:
            Path(stop).touch()  # noqa: ASYNC240 - measuring is over; the scraper ends
            try:
                out, _ = scraper.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                scraper.kill()
                out, _ = scraper.communicate()
            scrapes = out.strip()
        web.stop()
    if scrapes:
        done, size = scrapes.split()
        scrapes = f"{done} scrapes of {int(size) // 1024} KiB"
    row: dict[str, object] = {
        "relays": count, "scrape": scrape, "probes": probes, "failed": failed,
        "paired": len(errors["ehlo"]), "seconds": round(wall, 2),
        "max_concurrent_probes": config.max_concurrent_probes, "scrapes": scrapes,
    }
    for key, errs in errors.items():
        row[f"{key}_p50_ms"] = round(statistics.median(errs) * 1000, 3) if errs else None
        row[f"{key}_p99_ms"] = round(pct(errs, 0.99) * 1000, 3) if errs else None
        row[f"{key}_max_ms"] = round(max(errs, key=abs) * 1000, 3) if errs else None
    return row


def _print(rows: list[dict[str, object]]) -> None:
    head = f"{'relays':>12} {'probes':>6} {'failed':>6}"
    for key in PHASES:
        head += f" {key + ' p50/p99 ms':>22}"
    head += f" {'relay accept late p99 ms':>25}"
    print(head)
    for row in rows:
        name = f"{row['relays']}{' + scrape' if row['scrape'] else ''}"
        line = f"{name:>12} {row['probes']:>6} {row['failed']:>6}"
        for key in PHASES:
            p50, p99 = row[f"{key}_p50_ms"], row[f"{key}_p99_ms"]
            cell = f"{p50:+.3f} / {p99:+.3f}" if p50 is not None else "-"
            line += f" {cell:>22}"
        late = row["relay_late_p99_ms"]
        line += f" {late:>+25.3f}" if late is not None else f" {'-':>25}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,100,1000,100s,1000s",
                        help="relay counts; a trailing s adds a /metrics scrape loop")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    load0 = load_average()
    # The relay runs real-time (if allowed): its accept() stamp starts the greeting's truth.
    with tempfile.TemporaryDirectory() as tmp, truth_relay(Path(tmp), priority="realtime") as relay:
        print("injected delays: greeting 20 ms, ehlo 50 ms, auth 200 ms;"
              " error = measured - relay-side truth")
        for spec in args.rows.split(","):
            scrape = spec.endswith("s")
            rows.append(asyncio.run(_row(relay, int(spec.rstrip("s")), scrape)))
        relay_cpu = relay.cpu_seconds()
    _print(rows)
    print(f"load average before/after: {load0} / {load_average()};"
          f" relay process CPU {relay_cpu:.1f} s")
    write_json(args.json, {"rows": rows, "load_before": load0, "load_after": load_average()})


if __name__ == "__main__":
    main()
