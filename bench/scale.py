"""Scale: many relays in one exporter process: schedule slip, CPU share, RSS, /metrics cost.

The whole exporter (its App: scheduler, store, collector, web server) runs in this process
with N STARTTLS+AUTH relays on bench/truth_relay.py (another process; greeting 20 ms, EHLO
50 ms, AUTH 200 ms). It is watched for one probe interval from start-up, so every relay is
probed once, including the start-up spread where the first probes of all relays fall into
the first 10 s (the busiest stretch there is). Figures:

- schedule slip: how late each probe started against the time its loop meant it to start
  (timer lateness plus waiting for a free slot under max_concurrent_probes), p50/p99/max;
- CPU share: the process's CPU time over the window divided by the window;
- RSS at the end, with every relay's results held;
- /metrics: time to fetch it (another process, 20 fetches, 5 at 1,000 relays; median) and
  its size.

Only 127.0.0.1 is used.

    python bench/scale.py [--relays 10,100,1000] [--interval 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PASSWORD,
    TruthRelay,
    load_average,
    pct,
    relay_config,
    rss_mib,
    truth_relay,
    write_json,
)

from exporter.app import App
from exporter.config import RelayConfig
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from exporter.tasks import LoopClock

SCRAPES = 20
FETCH = """
import sys, time, urllib.request
times, size = [], 0
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
        size = len(r.read())
    times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2], size)
"""


class _Due(LoopClock):
    """The scheduler's clock, remembering when each task's sleep ends, so a probe can tell
    how late it started."""

    def __init__(self) -> None:
        self.due: dict[asyncio.Task[Any], float] = {}

    async def sleep(self, delay: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.due[task] = asyncio.get_running_loop().time() + delay
        await asyncio.sleep(delay)


async def _run(relay: TruthRelay, tmp: Path, count: int, interval: float) -> dict[str, object]:
    due = _Due()
    slips: list[float] = []
    durations: list[float] = []
    failed = 0

    async def probe(relay_cfg: RelayConfig, **kwargs: Any) -> RelayResult:
        nonlocal failed
        task = asyncio.current_task()
        if task in due.due:
            slips.append(asyncio.get_running_loop().time() - due.due[task])
        result = await probe_relay(relay_cfg, **kwargs)
        failed += not result.success
        durations.append(result.duration)
        return result

    path = tmp / f"scale-{count}.yaml"
    path.write_text(relay_config(relay, count, interval=f"{interval:g}s", timeout="5s"))
    app = App(str(path), listen=("127.0.0.1", 0), environ={"BENCH_PASSWORD": PASSWORD},
              probe=probe, clock=due)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await app.start()
    try:
        await asyncio.sleep(interval)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        probes = len(slips)
        while len(slips) < count and time.monotonic() - wall0 < interval + 30:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        assert app.web is not None
        fetch = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FETCH, f"http://127.0.0.1:{app.web.port}/metrics",
            str(SCRAPES if count <= 100 else SCRAPES // 4), stdout=subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(fetch.communicate(), 300)
        except TimeoutError:
            fetch.kill()
            out = b"nan 0"
        scrape_s, size = out.split() or (b"nan", b"0")
        rss = rss_mib()
    finally:
        await app.stop()
    return {
        "relays": count, "interval_s": interval, "window_s": round(wall, 1), "probes": probes,
        "failed": failed,
        "slip_p50_ms": round(statistics.median(slips) * 1000, 2) if slips else None,
        "slip_p99_ms": round(pct(slips, 0.99) * 1000, 2) if slips else None,
        "slip_max_ms": round(max(slips) * 1000, 2) if slips else None,
        "duration_p50_ms": round(statistics.median(durations) * 1000, 1) if durations else None,
        "duration_p99_ms": round(pct(durations, 0.99) * 1000, 1) if durations else None,
        "cpu_share_pct": round(cpu / wall * 100, 2),
        "cpu_ms_per_probe": round(cpu / probes * 1000, 2) if probes else None,
        "rss_mib": round(rss, 1),
        "metrics_ms": round(float(scrape_s) * 1000, 1), "metrics_kib": round(int(size) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relays", default="10,100,1000")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="probe interval and observation window for the largest count;"
                        " smaller counts use min(this, 10)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.relays.split(",")]
    load0 = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, truth_relay(Path(tmp)) as relay:
        for count in counts:
            # One full interval for the largest count; a short one is enough to size /metrics.
            interval = args.interval if count == max(counts) else min(args.interval, 10.0)
            rows.append(asyncio.run(_run(relay, Path(tmp), count, interval)))
    print(f"{'relays':>6} {'interval':>8} {'probes':>6} {'failed':>6}"
          f" {'slip p50/p99/max ms':>22} {'CPU %':>6} {'CPU ms/probe':>12} {'RSS MiB':>8}"
          f" {'/metrics ms':>11} {'KiB':>7}")
    for r in rows:
        slip = f"{r['slip_p50_ms']}/{r['slip_p99_ms']}/{r['slip_max_ms']}"
        print(f"{r['relays']:>6} {r['interval_s']:>7g}s {r['probes']:>6} {r['failed']:>6}"
              f" {slip:>22} {r['cpu_share_pct']:>6} {r['cpu_ms_per_probe']:>12}"
              f" {r['rss_mib']:>8} {r['metrics_ms']:>11} {r['metrics_kib']:>7}")
    print(f"window: one interval from start-up; load average before/after: {load0} /"
          f" {load_average()}; pid {os.getpid()}")
    write_json(args.json, {"rows": rows, "load_before": load0, "load_after": load_average()})


if __name__ == "__main__":
    main()
