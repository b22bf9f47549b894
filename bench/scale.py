"""Scale: a fleet in one daemon (1,000 and 10,000 relays): coverage, slip, loop lag, CPU per
probe against blackbox_exporter, RSS, /metrics and the status page.

For each fleet size, bench/scale_daemon.py runs the whole exporter in a fresh process (so CPU
time and RSS are the daemon's own) with N STARTTLS + AUTH PLAIN relays on bench/truth_relay.py
(greeting 20 ms, EHLO 50 ms, AUTH 200 ms; several relay processes for large fleets, each on
its own port), DNS checks against a loopback nameserver (the demo's), logging at info, and
Prometheus-style scrapes every 15 s from another process. It is watched for two probe
intervals from start-up: the first (start-up) and the second (steady state). Columns (see
README, Performance):

- coverage: share of relays whose first probe started within the first interval;
- slip p50/p99: how late probes started against the time their loop meant them to start
  (timer lateness plus waiting under max_concurrent_probes, set to 256 here);
- loop lag p99: lateness of a 50 ms asyncio timer running in the daemon (or the exporter's
  own event-loop lag histogram, where it has one: printed beside it);
- CPU/probe: the daemon's process CPU time over the second interval (probes, DNS checks,
  store, logging, scrapes: all it does) divided by the probes completed in it; "loop" counts
  the event-loop thread alone (without the scrapes' HTTP threads); the first interval's
  figure, start-up work included, is printed below the table;
- vs blackbox: that figure over blackbox_exporter's CPU per probe of the same relay, probed
  back to back during the same (second) interval by as many workers as probe at the
  fleet's rate (5 at 1,000 relays a minute, 48 at 10,000);
- RSS at the end of the window; /metrics median time and size, text and OpenMetrics, plain
  and gzip, fetched after the window from another process while probes go on; series per
  relay (samples labelled relay="r0000"); status page time.

Only 127.0.0.1 is used.

    python bench/scale.py [--relays 1000,10000] [--interval 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TruthRelay, load_average, truth_relay, write_json

HERE = Path(__file__).resolve().parent
# STARTTLS + AUTH probes a second one truth relay process serves without falling behind
# (its TLS handshakes run in Python: about 1 ms of CPU each).
RELAY_RATE = 100.0

DNS_SERVER = r"""
import asyncio, sys
from exporter.demo.dns import DemoDNS
async def main():
    server = DemoDNS()
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@contextmanager
def _dns_server() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", DNS_SERVER], stdout=subprocess.PIPE,
                            text=True, cwd=HERE.parent)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)


def _one(count: int, interval: float, relays: list[TruthRelay], dns_port: int, tmp: Path,
         scrape_every: float, *, fetch: bool = True, gc_default: bool = False
         ) -> dict[str, object]:
    out = tmp / f"scale-{count}.json"
    log = tmp / f"daemon-{count}.log"
    cpu0 = [r.cpu_seconds() for r in relays]
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, str(HERE / "scale_daemon.py"), "--relays", str(count),
             "--interval", str(interval), "--relay-ports", ",".join(str(r.port) for r in relays),
             "--ca", ",".join(str(r.ca) for r in relays), "--dns-port", str(dns_port),
             "--scrape-every", str(scrape_every), "--json", str(out),
             *(() if fetch else ("--no-fetch",)), *(("--gc-default",) if gc_default else ())],
            stderr=err, check=False)
    if done.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"scale_daemon.py for {count} relays failed:\n" + "\n".join(tail))
    row: dict[str, object] = json.loads(out.read_text())
    lines = log.read_text(errors="replace").splitlines()
    row["log_lines"] = len(lines)
    row["log_info_lines"] = sum(" level=info " in line for line in lines)
    window = float(row["window_s"])  # type: ignore[arg-type]
    row["relay_cpu_pct"] = round(max(r.cpu_seconds() - c for r, c in zip(relays, cpu0,
                                                                          strict=True))
                                 / max(window, 1.0) * 100, 1)
    return row


def _cell(value: object, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def table(rows: list[dict[str, object]]) -> list[str]:
    """The Performance table of README, one row per fleet size."""
    out = ["| relays | first-interval coverage | slip p50 / p99 | loop lag p99 "
           "| CPU per probe (loop) | vs blackbox_exporter | RSS | /metrics text "
           "| /metrics OpenMetrics | gzip text / OM | series per relay | status page |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['ratio']} ({r['blackbox_cpu_ms_per_probe']} ms)" if r.get("ratio")
                 else _cell(r.get("blackbox_error")))
        out.append(
            f"| {r['relays']:,} | {r['coverage_pct']} % ({r['covered']:,}) "
            f"| {r['slip_p50_ms']} / {r['slip_p99_ms']} ms | {r['loop_lag_p99_ms']} ms "
            f"| {r['cpu_ms_per_probe']} ms ({r['loop_cpu_ms_per_probe']}) | {ratio} "
            f"| {r['rss_mib']} MiB "
            f"| {_cell(r.get('metrics_text_ms'))} ms, {_cell(r.get('metrics_text_kib'))} KiB "
            f"| {_cell(r.get('metrics_om_ms'))} ms, {_cell(r.get('metrics_om_kib'))} KiB "
            f"| {_cell(r.get('metrics_text_gzip_ms'))} / {_cell(r.get('metrics_om_gzip_ms'))} ms, "
            f"{_cell(r.get('metrics_text_gzip_kib'))} / {_cell(r.get('metrics_om_gzip_kib'))} KiB "
            f"| {_cell(r.get('series_per_relay'))} | {_cell(r.get('status_page_ms'))} ms |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relays", default="1000,10000")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="probe interval, and the window watched for each size")
    parser.add_argument("--scrape-every", type=float, default=15.0,
                        help="seconds between scrapes during the window; 0: none")
    parser.add_argument("--relay-procs", type=int, default=0,
                        help="truth relay processes (default: one per 100 probes/s)")
    parser.add_argument("--no-fetch", dest="fetch", action="store_false",
                        help="do not time /metrics and the status page after the window")
    parser.add_argument("--gc-default", action="store_true",
                        help="leave Python's garbage collector as it is, instead of freezing "
                        "the config's objects as the daemon does")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.relays.split(",")]
    procs = args.relay_procs or max(1, round(max(counts) / args.interval / RELAY_RATE + 0.49))
    load0 = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        relays = [stack.enter_context(truth_relay(Path(tmp) / f"relay{i}"))
                  for i in range(procs)]
        dns_port = stack.enter_context(_dns_server())
        for count in counts:
            print(f"-- {count} relays, {args.interval:g} s", flush=True)
            rows.append(_one(count, args.interval, relays, dns_port, Path(tmp),
                             args.scrape_every, fetch=args.fetch, gc_default=args.gc_default))
    print("\n".join(table(rows)))
    for r in rows:
        print(f"{r['relays']:,} relays: {r['probes']} probes ({r['failed']} failed) in the "
              f"second {r['window_s']} s after a {r['start_s']} s start; CPU "
              f"{r['cpu_share_pct']} %; first interval {r['first_interval_probes']} probes, "
              f"{r['first_interval_cpu_ms_per_probe']} ms CPU per probe with start-up work; "
              f"slip max {r['slip_max_ms']} ms ({r['slip_source']}); loop lag p50 "
              f"{r['loop_lag_p50_ms']} / max {r['loop_lag_max_ms']} ms (exporter's own metric "
              f"p99: {_cell(r['loop_lag_metric'])}); {r['scrapes']} scrapes during the window, "
              f"p50 {r['scrape_p50_ms']} / max {r['scrape_max_ms']} ms; blackbox "
              f"{_cell(r.get('blackbox_probes'))} probes; truth relay CPU {r['relay_cpu_pct']} "
              f"% ({procs} process{'es' if procs > 1 else ''}); {r['log_lines']} log lines "
              f"({r['log_info_lines']} info); garbage collection {r['gc_ms']} ms in the "
              f"window, {r['gc_full']} full (longest {r['gc_full_max_ms']} ms) over "
              f"{r['gc_tracked_objects']:,} tracked objects; event-loop stalls over 20 ms "
              f"(s from start, ms): {r['loop_stalls_over_20ms']}")
    print(f"load average before/after: {load0} / {load_average()}; pid {os.getpid()}")
    write_json(args.json, {"rows": rows, "relay_procs": procs, "load_before": load0,
                           "load_after": load_average(), "table": table(rows)})


if __name__ == "__main__":
    main()
