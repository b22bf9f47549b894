"""How long a /metrics scrape takes at fleet scale, in text and OpenMetrics, gzip included.

Builds a result store with N synthetic relays (default: 1,000 and 10,000), each as a default
relay looks after a healthy probe: STARTTLS + AUTH on a host name, 7 phases timed, TLS facts,
relay DNS checks (address, ptr, one blocklist). Then times, per format:

- ``first``: the first scrape, which renders every relay's block;
- ``steady``: a scrape after a quarter of the relays have a new result (a 60 s probe interval
  scraped every 15 s), which renders those again and joins the rest;
- ``unchanged``: a scrape with no new result;
- ``gzip``: the steady scrape compressed as the server does for Accept-Encoding: gzip;
- ``prometheus_client``: the same families written by prometheus_client's own encoder (the
  way /metrics was written before blocks), for comparison.

Each figure is the median of ``--repeat`` runs. Also prints the series per relay and the
body sizes. Times are not asserted anywhere; nothing is contacted over the network.

``--canaries`` gives every relay a canary to one mailbox (about 40 more series a relay).

``--http`` also times GET /metrics from the exporter's own HTTP server, body read included.
``--loop-lag 5`` also runs an event loop for 5 s idle and 5 s while another thread scrapes
back to back, and prints how late its 1 ms timer wakes (the GIL the scrape holds).

    python bench/exposition.py [--relays 1000 10000] [--repeat 5] [--canaries] [--http]
                               [--loop-lag 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import CollectorRegistry

from exporter.canary import CanaryStore
from exporter.canary.result import CanarySent
from exporter.canary.store import ArrivalReport
from exporter.dns import DNSStore, RelayDNSReport
from exporter.dns.result import CheckName, CheckStatus, DNSCheck
from exporter.exposition import gzip_chunks
from exporter.metrics import ExporterCollector
from exporter.model import Phase, TLSInfo
from exporter.relay import RelayInfo, RelayResult, ResultStore
from exporter.web import WebServer

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
REACHED = (Phase.RESOLVE, Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.TLS, Phase.AUTH,
           Phase.QUIT)
CHECKS = (CheckName.ADDRESS, CheckName.PTR, CheckName.DNSBL)


def probe(store: ResultStore, name: str, at: float) -> None:
    store.record(RelayResult(
        relay=name, success=True, started_at=at, duration=0.2 + (hash((name, at)) % 100) / 1e3,
        phases={p: 0.001 * (k + 1) + (hash((name, at, p)) % 97) / 1e5
                for k, p in enumerate(REACHED)},
        tls=TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", True, 1.8e9)))


def fleet(n: int) -> tuple[ResultStore, DNSStore, list[str]]:
    names = [f"relay-{i:05d}" for i in range(n)]
    store, dns = ResultStore(), DNSStore()
    store.configure([RelayInfo(name=name, host=f"{name}.example.com", port=587,
                               tls="starttls", auth="plain") for name in names],
                    warnings=(), source="bench")
    dns.configure([], [(name, f"{name}.example.com") for name in names])
    for i, name in enumerate(names):
        probe(store, name, 1.7e9 + i)
        address = f"192.0.{i // 250 % 256}.{i % 250}"
        dns.record(RelayDNSReport(
            relay=name, host=f"{name}.example.com", checked_at=1.7e9, addresses=(address,),
            checks=tuple(DNSCheck(name, c, CheckStatus.OK, "ok") for c in CHECKS),
            ptr_matches={address: True}, listed={(address, "zen.example.org"): False}))
    return store, dns, names


def canaries(names: list[str]) -> CanaryStore:
    """A canary through every relay to one mailbox, sent and seen in the inbox."""
    store = CanaryStore()
    store.configure([(name, "box") for name in names], [("box", False)])
    for k, name in enumerate(names):
        store.sent(CanarySent(relay=name, token=f"t{k}", success=True, started_at=1.7e9 + k,
                              sent_at=1.7e9 + k + 0.5,
                              phases={Phase.MAIL: 0.01, Phase.RCPT: 0.02, Phase.DATA: 0.3}))
        store.arrived(ArrivalReport(
            relay=name, mailbox="box", token=f"t{k}", folder="inbox", folder_name="INBOX",
            sent_at=1.7e9 + k, seen_at=1.7e9 + k + 9, latency=9.0, receiver_delay=8.0,
            verdicts={"spf": "pass", "dkim": "pass", "dmarc": "pass"}, dmarc_aligned=True))
    return store


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(n: int, repeat: int, *, with_canaries: bool) -> None:
    store, dns, names = fleet(n)
    canary = canaries(names).snapshot if with_canaries else None
    collector = ExporterCollector(store.snapshot, canary, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    rounds = iter(range(1, 10**6))

    def changed() -> None:  # a quarter of the relays probed again
        r = next(rounds)
        for name in names[r % 4::4]:
            probe(store, name, 1.8e9 + r)

    for label, accept in (("text", ""), ("openmetrics", OPENMETRICS)):
        firsts = []
        for _ in range(repeat):
            fresh = ExporterCollector(store.snapshot, canary, dns=dns.snapshot)
            alone = CollectorRegistry()
            alone.register(fresh)
            start = time.perf_counter()
            fresh.render(alone, accept)
            firsts.append(time.perf_counter() - start)
        collector.render(registry, accept)
        times: list[float] = []
        for _ in range(repeat):
            changed()
            start = time.perf_counter()
            collector.render(registry, accept)
            times.append(time.perf_counter() - start)
        steady_ms = statistics.median(times) * 1000
        unchanged = median_ms(lambda: collector.render(registry, accept), repeat)  # noqa: B023
        chunks = collector.render(registry, accept)[0]
        body = b"".join(chunks)
        gzip_ms = steady_ms + median_ms(lambda: gzip_chunks(chunks), repeat)  # noqa: B023
        size = sum(len(c) for c in gzip_chunks(chunks))
        encoder = generate_latest if label == "text" else openmetrics_latest
        reference = median_ms(lambda: encoder(registry), max(1, repeat // 2))  # noqa: B023
        print(f"{n:>6} {label:<12} first {statistics.median(firsts) * 1000:7.1f} ms  "
              f"steady {steady_ms:6.1f} ms  unchanged {unchanged:6.1f} ms  "
              f"steady+gzip {gzip_ms:6.1f} ms  size {len(body) / 1e6:5.1f} MB "
              f"(gzip {size / 1e6:4.1f} MB)  prometheus_client {reference:7.1f} ms")
    text = b"".join(collector.render(registry, "")[0]).decode()
    ours = sum(1 for line in text.splitlines()
               if not line.startswith("#") and f'relay="{names[0]}"' in line)
    print(f"{n:>6} series per relay{' (canary included)' if with_canaries else ''}: {ours}")


def over_http(n: int, repeat: int) -> None:
    """GET /metrics from the exporter's own HTTP server, a quarter of the relays changed
    before each: text, OpenMetrics, and both gzipped; median of ``repeat``."""
    store, dns, names = fleet(n)
    collector = ExporterCollector(store.snapshot, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    web = WebServer(("127.0.0.1", 0), registry=registry, snapshot=store.snapshot,
                    reload=lambda: (True, ""), ready=lambda: True, dns=dns.snapshot,
                    exposition=lambda accept: collector.render(registry, accept))
    web.start()
    try:
        for label, headers in (("text", {}), ("openmetrics", {"Accept": OPENMETRICS}),
                               ("text+gzip", {"Accept-Encoding": "gzip"}),
                               ("openmetrics+gzip", {"Accept": OPENMETRICS,
                                                     "Accept-Encoding": "gzip"})):
            times, size = [], 0
            for r in range(repeat + 1):
                for name in names[r % 4::4]:
                    probe(store, name, 2e9 + r)
                request = urllib.request.Request(f"http://127.0.0.1:{web.port}/metrics",
                                                 headers=headers)
                start = time.perf_counter()
                with urllib.request.urlopen(request, timeout=60) as answer:
                    size = len(answer.read())
                if r:  # the first fetch renders every relay once
                    times.append(time.perf_counter() - start)
            print(f"{n:>6} GET /metrics {label:<17} {statistics.median(times) * 1000:7.1f} ms"
                  f"  {size / 1e6:5.1f} MB")
    finally:
        web.stop()


def loop_lag(n: int, seconds: float) -> None:
    """How late a 1 ms timer on an event loop wakes while another thread scrapes back to
    back (render, gzip), as the HTTP server's thread does while probes are being timed."""
    store, dns, names = fleet(n)
    collector = ExporterCollector(store.snapshot, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    stop = threading.Event()
    scrapes = [0]

    def scrape() -> None:
        r = 0
        while not stop.is_set():
            r += 1
            for name in names[r % 4::4]:
                probe(store, name, 1.9e9 + r)
            gzip_chunks(collector.render(registry, "")[0])
            scrapes[0] += 1

    async def watch() -> list[float]:
        late = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(time.perf_counter() - start - 0.001)
        return late

    idle = asyncio.run(watch())
    thread = threading.Thread(target=scrape)
    thread.start()
    busy = asyncio.run(watch())
    stop.set()
    thread.join()
    for label, late in (("idle", idle), ("scraping", busy)):
        late.sort()
        print(f"{n:>6} loop lag {label:<9} p50 {late[len(late) // 2] * 1000:5.2f} ms  "
              f"p99 {late[int(len(late) * 0.99)] * 1000:5.2f} ms  max {late[-1] * 1000:6.2f} ms"
              + (f"  ({scrapes[0]} scrapes)" if label == "scraping" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relays", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--canaries", action="store_true",
                        help="give every relay a canary to one mailbox (sent and seen)")
    parser.add_argument("--loop-lag", type=float, default=0, metavar="SECONDS",
                        help="also time an event loop's 1 ms timer while scraping")
    parser.add_argument("--http", action="store_true",
                        help="also time GET /metrics from the exporter's HTTP server")
    args = parser.parse_args()
    for n in args.relays:
        measure(n, args.repeat, with_canaries=args.canaries)
        if args.http:
            over_http(n, args.repeat)
        if args.loop_lag:
            loop_lag(n, args.loop_lag)


if __name__ == "__main__":
    main()
