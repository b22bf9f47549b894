"""One fleet size of bench/scale.py: the whole daemon in this process, watched for two intervals.

Started by bench/scale.py, one process per fleet size, so CPU time and RSS are the daemon's
own. Everything a user runs is on: the App (scheduler, result store, DNS checks against a
loopback nameserver, logging at info to stderr), and another process scraping /metrics the
way Prometheus does (OpenMetrics, gzip) every ``--scrape-every`` seconds. The first interval
from start-up gives coverage (and its CPU, start-up work included: every relay's first DNS
check falls there at 1,000 relays); the second, the steady state, gives CPU per probe while
blackbox_exporter probes the same relay from another process, so its CPU per probe is
measured in the same minute on the same machine. Slip and loop lag cover both intervals.
After them, /metrics (text and OpenMetrics, plain and gzip) and the status page are fetched
and timed from another process.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blackbox import blackbox
from common import PASSWORD, pct, proc_cpu_seconds, rss_mib, write_json

from exporter.app import App
from exporter.config import RelayConfig
from exporter.logs import setup_logging
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from exporter.tasks import LoopClock

# The event-loop lag timer: lateness of a 50 ms asyncio sleep, 1,200 samples a minute. A
# 10 ms timer costs the process 5 ms of CPU a second (0.3 ms per probe at 1,000 relays every
# 60 s), which would be counted as the daemon's.
LAG_TICK = 0.050
MAX_CONCURRENT = 256
BLACKBOX_PROBE_S = 0.28  # one blackbox_exporter probe of the truth relay, back to back
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
TEXT_ACCEPT = "text/plain;version=0.0.4"
OM_ACCEPT = "application/openmetrics-text;version=1.0.0"
FORMATS = (("text", TEXT_ACCEPT, "identity"), ("om", OM_ACCEPT, "identity"),
           ("text_gzip", TEXT_ACCEPT, "gzip"), ("om_gzip", OM_ACCEPT, "gzip"))

# Run by another process: GET a URL with headers until told to stop or ``count`` times;
# prints {"rows": [[seconds, bytes on the wire, decoded bytes, samples with a relay label,
# the first relay's series], ...], "lags": the first /metrics' smtp_exporter_*lag* lines}.
FETCH = r"""
import gzip, json, sys, time, urllib.request
url, accept, enc, count, every, until = sys.argv[1:7]
count, every, until = int(count), float(every), float(until)
out, lags = [], []
while len(out) < count and time.time() < until:
    t = time.perf_counter()
    req = urllib.request.Request(url, headers={"Accept": accept, "Accept-Encoding": enc})
    with urllib.request.urlopen(req, timeout=300) as r:
        body = r.read()
        zipped = r.headers.get("Content-Encoding") == "gzip"
    took = time.perf_counter() - t
    text = gzip.decompress(body) if zipped else body
    relay = one = 0
    if url.endswith("/metrics"):
        for line in text.split(b"\n"):
            if b'relay="' in line and not line.startswith(b"#"):
                relay += 1
                one += b'relay="r0000"' in line
    if not out and url.endswith("/metrics"):
        lags = [line.decode() for line in text.split(b"\n")
                if line.startswith(b"smtp_exporter_") and b"lag" in line]
    out.append([took, len(body), len(text), relay, one])
    if every > 0:
        time.sleep(max(0.0, every - took))
print(json.dumps({"rows": out, "lags": lags}))
"""


def fleet_config(count: int, ports: list[int], cas: list[str], *, interval: float,
                 dns_port: int) -> str:
    """``count`` STARTTLS + AUTH PLAIN relays spread over the truth relays on ``ports`` (each
    with its CA in ``cas``), a sending domain and a blocklist checked against the loopback
    nameserver."""
    lines = [
        f"max_concurrent_probes: {MAX_CONCURRENT}",
        f"dns: {{nameservers: ['127.0.0.1:{dns_port}'], timeout: 2s, interval: 10m}}",
        "domains: [{name: demo.localhost, dkim_selectors: [demo]}]",
        "blocklists: [dnsbl.demo.localhost]",
        "relays:",
    ]
    for i in range(count):
        lines.append(
            f"  - {{name: r{i:04d}, host: 127.0.0.1, port: {ports[i % len(ports)]},"
            f" tls: starttls, ca_file: {cas[i % len(cas)]}, ehlo_name: r{i:04d}.bench.test,"
            f" interval: {interval:g}s, timeout: 5s,"
            f" auth: {{username: bench, password_env: BENCH_PASSWORD}}}}")
    return "\n".join(lines) + "\n"


class _Due(LoopClock):
    """The scheduler's clock, remembering when each task's sleep ends, so a probe can tell
    how late it started. A scheduler that sleeps otherwise leaves this empty; the slip is then
    read from smtp_exporter_schedule_lag_seconds."""

    def __init__(self) -> None:
        self.due: dict[asyncio.Task[Any], float] = {}

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.due[task] = time.perf_counter() + seconds
        await asyncio.sleep(seconds)


async def _lag_timer(lates: list[float], stalls: list[tuple[float, float]], since: float
                     ) -> None:
    """Lateness of each tick in ``lates``; (seconds from ``since``, ms late) of the first
    ticks over 20 ms late in ``stalls``, to tell a start-up stall from a steady one."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        late = time.perf_counter() - t - LAG_TICK
        lates.append(late)
        if late > 0.02 and len(stalls) < 40:
            stalls.append((round(t - since, 1), round(late * 1000, 1)))


def _spawn_fetch(url: str, accept: str, enc: str, count: int, every: float, until: float
                 ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", FETCH, url, accept, enc, str(count),
                             str(every), str(until)], stdout=subprocess.PIPE, text=True)


async def _fetch(url: str, accept: str, enc: str, count: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FETCH, url, accept, enc, str(count), "0", "9e12",
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out or b'{"rows": [], "lags": []}')  # type: ignore[no-any-return]


def _median(rows: list[list[float]], i: int) -> float | None:
    values = sorted(r[i] for r in rows)
    return values[len(values) // 2] if values else None


def _histogram_quantile(lines: list[str], name: str, q: float) -> float | None:
    """The q-quantile of a histogram in exposition lines, from its buckets (upper bound),
    summed over its label sets; None when it is not there or empty."""
    buckets: dict[float, float] = {}
    for line in lines:
        if line.startswith(name + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets or not buckets.get(float("inf")):
        return None
    total = buckets[float("inf")]
    return next(b for b in sorted(buckets) if buckets[b] >= q * total)


class _Blackbox(threading.Thread):
    """blackbox_exporter probing the relay back to back from ``workers`` threads of another
    process, for the window; its CPU time from /proc."""

    def __init__(self, relay_port: int, ca: Path, tmp: Path, seconds: float, workers: int
                 ) -> None:
        super().__init__(daemon=True)
        self.args = (relay_port, ca, tmp)
        self.seconds, self.workers = seconds, workers
        self.result: dict[str, object] = {}

    def run(self) -> None:
        port, ca, tmp = self.args
        with blackbox(port, ca, tmp, password=PASSWORD) as box:
            if isinstance(box, str):
                self.result = {"blackbox_error": box}
                return
            cpu0 = proc_cpu_seconds(box.proc.pid)
            drive = subprocess.run(
                [sys.executable, "-c", DRIVE, box.url, str(self.workers), str(self.seconds)],
                capture_output=True, text=True, check=False)
            cpu = proc_cpu_seconds(box.proc.pid) - cpu0
        ok, failed = (int(x) for x in (drive.stdout.split() or ["0", "0"]))
        self.result = {"blackbox_probes": ok + failed, "blackbox_failed": failed,
                       "blackbox_cpu_ms_per_probe":
                       round(cpu / (ok + failed) * 1000, 3) if ok + failed else None}


DRIVE = r"""
import sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, workers, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
until = time.monotonic() + seconds
def work(_):
    ok = bad = 0
    while time.monotonic() < until:
        with urllib.request.urlopen(url, timeout=30) as r:
            if b"\nprobe_success 1" in r.read(): ok += 1
            else: bad += 1
    return ok, bad
with ThreadPoolExecutor(workers) as pool:
    done = list(pool.map(work, range(workers)))
print(sum(d[0] for d in done), sum(d[1] for d in done))
"""


async def watch(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    count, interval = args.relays, args.interval
    ports = [int(p) for p in args.relay_ports.split(",")]
    due = _Due()
    started_slips: list[tuple[float, float]] = []  # (when a probe started, how late)
    lates: list[float] = []
    probed: dict[str, float] = {}  # relay -> when its first probe started
    done_at: list[tuple[float, bool]] = []  # when each probe ended, and whether it succeeded

    async def probe(relay_cfg: RelayConfig, **kwargs: Any) -> RelayResult:
        task = asyncio.current_task()
        if task in due.due:
            now = time.perf_counter()
            started_slips.append((now, now - due.due.pop(task)))
        probed.setdefault(relay_cfg.name, time.perf_counter())
        result = await probe_relay(relay_cfg, **kwargs)
        done_at.append((time.perf_counter(), result.success))
        return result

    path = tmp / f"fleet-{count}.yaml"
    cas = args.ca.split(",")
    path.write_text(fleet_config(count, ports, cas, interval=interval, dns_port=args.dns_port))
    app = App(str(path), listen=("127.0.0.1", 0), environ={"BENCH_PASSWORD": PASSWORD},
              probe=probe, clock=due, freeze_heap=not args.gc_default)
    # The first interval runs from the moment the scheduler starts the relays' loops (after
    # the config is loaded), so coverage counts first probes that started within it.
    applied: list[float] = []
    apply = app.scheduler.apply

    def timed_apply(config: Any) -> None:
        applied.append(time.perf_counter())
        apply(config)

    app.scheduler.apply = timed_apply  # type: ignore[method-assign]
    started = time.perf_counter()
    await app.start()
    assert app.web is not None
    base = f"http://127.0.0.1:{app.web.port}"
    start_s = time.perf_counter() - started
    collections: list[tuple[int, float]] = []  # (generation, seconds) of each GC in the window
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            collections.append((info["generation"], time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)
    stalls: list[tuple[float, float]] = []
    lag_task = asyncio.create_task(_lag_timer(lates, stalls, started))
    # blackbox_exporter at the fleet's own probe rate: a probe of the truth relay takes about
    # 0.28 s (its 20 + 50 + 200 ms delays), so this many workers back to back probe as often
    # as the daemon does. Both pay alike for waking up between sparse probes, and gain alike
    # from dense ones.
    workers = args.blackbox_workers or max(1, round(count / interval * BLACKBOX_PROBE_S))
    box = _Blackbox(ports[0], Path(cas[0]), tmp, interval, workers)
    scraper = _spawn_fetch(f"{base}/metrics", PROM_ACCEPT, "gzip", 10**6, args.scrape_every,
                           time.time() + 2 * interval) if args.scrape_every > 0 else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.sleep(interval)
        first_end = time.perf_counter()
        first_cpu = time.process_time() - cpu0
        first_probes = sum(1 for t, _ in done_at if t <= first_end)
        first_interval_end = (applied[0] if applied else t0) + interval
        covered = sum(1 for at in probed.values() if at <= first_interval_end)
        box.start()  # the steady interval: CPU per probe beside blackbox_exporter's
        cpu0, loop0, t1 = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.sleep(interval)
        cpu, loop_cpu = time.process_time() - cpu0, time.thread_time() - loop0
        wall, end = time.perf_counter() - t1, time.perf_counter()
        probes = sum(1 for t, _ in done_at if t1 < t <= end)
        failed = sum(1 for t, ok in done_at if t1 < t <= end and not ok)
        # Probes that started in the window; after it, the fetches below would count too.
        slips = [slip for t, slip in started_slips if t <= end]
        late_at = [round(t - started, 1) for t, slip in started_slips if t <= end and slip > 0.05]
        gc.callbacks.remove(on_gc)
        full = [d for g, d in collections if g == 2]
        gc_figures = {"gc_ms": _ms(sum(d for _, d in collections)), "gc_full": len(full),
                      "gc_full_max_ms": _ms(max(full, default=None)),
                      "gc_tracked_objects": len(gc.get_objects())}
        lag = sorted(lates)
        rss = rss_mib()
        scrapes: list[list[float]] = []
        if scraper is not None:
            out, _ = await asyncio.to_thread(scraper.communicate)
            scrapes = json.loads(out or '{"rows": []}')["rows"]
        await asyncio.to_thread(box.join)
        lag_task.cancel()
        timings: dict[str, object] = {}
        lags: list[str] = []
        for key, accept, enc in FORMATS if args.fetch else ():
            got = await _fetch(f"{base}/metrics", accept, enc, 1)
            rows = got["rows"]
            if rows and rows[0][0] < 2.0:  # fast enough to take the median of five
                rows += (await _fetch(f"{base}/metrics", accept, enc, 4))["rows"]
            timings[f"metrics_{key}_ms"] = _ms(_median(rows, 0))
            timings[f"metrics_{key}_kib"] = round((_median(rows, 1) or 0) / 1024, 1)
            if key == "text" and rows:
                lags = got["lags"]
                timings["series_per_relay"] = rows[0][4]
                timings["relay_series"] = rows[0][3]
        page = (await _fetch(f"{base}/", "text/html", "identity", 3))["rows"] if args.fetch else []
        timings["status_page_ms"] = _ms(_median(page, 0))
        timings["status_page_kib"] = round((_median(page, 1) or 0) / 1024, 1)
    finally:
        await app.stop()
    # The exporter's own view, where it exports one: its event-loop lag, and its schedule lag
    # when this clock saw no sleeps (a scheduler that keeps time otherwise).
    loop_names = {line.split("_bucket", 1)[0] for line in lags
                  if "loop_lag" in line and "_bucket" in line}
    lag_metric = (_ms(_histogram_quantile(lags, min(loop_names), 0.99))
                  if loop_names else None)
    slip_source = "probe start - timer due"
    slip_p50 = pct(slips, 0.5) if slips else None
    slip_p99 = pct(slips, 0.99) if slips else None
    if not slips:
        slip_source = "smtp_exporter_schedule_lag_seconds buckets"
        slip_p50 = _histogram_quantile(lags, "smtp_exporter_schedule_lag_seconds", 0.5)
        slip_p99 = _histogram_quantile(lags, "smtp_exporter_schedule_lag_seconds", 0.99)
    figures: dict[str, object] = {
        "relays": count, "interval_s": interval, "window_s": round(wall, 1),
        "start_s": round(start_s, 2), "probes": probes, "failed": failed,
        "covered": covered, "coverage_pct": round(covered / count * 100, 2),
        "slip_p50_ms": _ms(slip_p50), "slip_p99_ms": _ms(slip_p99),
        "slip_max_ms": _ms(max(slips) if slips else None), "slip_source": slip_source,
        "slips_over_50ms": len(late_at), "slips_over_50ms_at_s": late_at[:40],
        "loop_lag_p50_ms": _ms(pct(lag, 0.5) if lag else None),
        "loop_lag_p99_ms": _ms(pct(lag, 0.99) if lag else None),
        "loop_lag_max_ms": _ms(lag[-1] if lag else None), "loop_lag_metric": lag_metric,
        "loop_stalls_over_20ms": stalls,
        "first_interval_probes": first_probes,
        "first_interval_cpu_ms_per_probe": (round(first_cpu / first_probes * 1000, 3)
                                            if first_probes else None),
        "cpu_share_pct": round(cpu / wall * 100, 2),
        "cpu_ms_per_probe": round(cpu / probes * 1000, 3) if probes else None,
        "loop_cpu_ms_per_probe": round(loop_cpu / probes * 1000, 3) if probes else None,
        "rss_mib": round(rss, 1), "scrapes": len(scrapes),
        "scrape_p50_ms": _ms(_median(scrapes, 0)), "scrape_max_ms": _ms(
            max((r[0] for r in scrapes), default=None)),
        **gc_figures, **timings, **box.result,
    }
    bb = figures.get("blackbox_cpu_ms_per_probe")
    if isinstance(bb, float) and bb and figures["cpu_ms_per_probe"] is not None:
        figures["ratio"] = round(float(figures["cpu_ms_per_probe"]) / bb, 3)  # type: ignore[arg-type]
    return figures


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relays", type=int, required=True)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--relay-ports", required=True, help="truth relays' ports, comma-separated")
    parser.add_argument("--ca", required=True, help="each truth relay's CA file, comma-separated")
    parser.add_argument("--dns-port", type=int, required=True)
    parser.add_argument("--scrape-every", type=float, default=15.0)
    parser.add_argument("--blackbox-workers", type=int, default=0,
                        help="blackbox_exporter's back-to-back workers (default: as many as "
                        "probe at the fleet's rate)")
    parser.add_argument("--no-fetch", dest="fetch", action="store_false",
                        help="do not time /metrics and the status page after the window")
    parser.add_argument("--gc-default", action="store_true",
                        help="leave Python's garbage collector as it is, instead of freezing "
                        "the config's objects as the daemon does (exporter/heap.py)")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    setup_logging("info", "logfmt")
    with tempfile.TemporaryDirectory() as tmp:
        write_json(args.json, asyncio.run(watch(args, Path(tmp))))


if __name__ == "__main__":
    main()
