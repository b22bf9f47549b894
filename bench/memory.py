"""Memory: the bytes each relay holds in the exporter, by component, and the status page's cost.

Builds the config of N STARTTLS + AUTH PLAIN relays, fills a ResultStore with ``--probes``
synthetic but realistic results per relay (seven phase timings, TLS facts, a 17-line
transcript made of fresh strings as a probe makes them; one relay in five failing once
mid-way, one in ten failing its last probe at AUTH), then prints for each N:

- bytes per relay by component: the config's RelayConfig, and each field of the store's
  RelayView (deep size; an object shared by two components counts once, for the first);
- the process's RSS, and its growth per relay while config and store filled (with
  ``--tracemalloc``, the allocations counted as well);
- the time to render the status page (its first and last page, two filtered ones) and
  /status.json (whole, and filtered), and their sizes; the median of 3.

No network; nothing is probed.

    python bench/memory.py [--relays 1000,10000] [--probes 60] [--tracemalloc] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load, rss_mib, write_json

from exporter.app import relay_infos
from exporter.config import Config
from exporter.model import Phase, Reason, TLSInfo, TranscriptLine
from exporter.relay import RelayResult, ResultStore, Snapshot
from exporter.web.statusjson import status_json
from exporter.web.statuspage import render_status_page

_SKIP = (type, Enum, type(sys), type(len), type(lambda: 0))


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and everything it references that ``seen`` does not hold yet."""
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, _SKIP) or item is None:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        stack.extend(gc.get_referents(item))
    return total


def config_text(count: int) -> str:
    lines = ["relays:"]
    for i in range(count):
        lines.append(
            f"  - {{name: relay-{i:05d}, host: smtp{i:05d}.customer{i % 97}.example.net,"
            " port: 587, tls: starttls, ehlo_name: probe.example.org,"
            " auth: {username: bench, password_env: BENCH_PASSWORD}}"
        )
    return "\n".join(lines) + "\n"


def fake_result(name: str, seq: int, *, fail: bool) -> RelayResult:
    """A STARTTLS + AUTH PLAIN probe as probe_relay returns it; every string is new."""
    t0 = 1_800_000_000.0 + seq * 60
    host = f"mx.{name}.example.net"
    lines = [
        ("S", f"220 {host} ESMTP Postfix"), ("C", "EHLO probe.example.org"),
        ("S", f"250-{host}"), ("S", "250-PIPELINING"), ("S", "250-SIZE 35882577"),
        ("S", "250-STARTTLS"), ("S", "250 8BITMIME"), ("C", "STARTTLS"),
        ("S", "220 2.0.0 Ready to start TLS"), ("*", "TLSv1.3 TLS_AES_256_GCM_SHA384"),
        ("C", "EHLO probe.example.org"), ("S", f"250-{host}"), ("S", "250-AUTH PLAIN LOGIN"),
        ("S", "250 8BITMIME"), ("C", "AUTH PLAIN ********"),
        ("S", "535 5.7.8 Error: authentication failed" if fail
         else "235 2.7.0 Authentication successful"),
        ("C", "QUIT"),
    ]
    transcript = tuple(TranscriptLine(round(0.001 * k + seq * 1e-7, 6), d, "".join([t]))
                       for k, (d, t) in enumerate(lines))
    phases: dict[Phase, float] = {p: 0.001 * (k + 1) + seq * 1e-6 for k, p in enumerate(Phase)
              if p not in (Phase.MAIL, Phase.RCPT, Phase.DATA)}
    tls = TLSInfo("".join(["TLSv1.3"]), "".join(["TLS_AES_256_GCM_SHA384"]), True,
                  not_after=t0 + 86400 * 60, not_before=t0 - 86400 * 30,
                  issuer=f"CN=R11,O=Let's Encrypt,C=US {seq % 1}",
                  subject=f"CN={host}")
    reply = lines[15][1]
    return RelayResult(
        relay=name, success=not fail, started_at=t0, duration=sum(phases.values()),
        phases=phases, reason=Reason.AUTH_FAILED if fail else None,
        hint="The relay refused the credentials: check username and password." if fail
        else None, cause="" if fail else None, detail=f"AUTH PLAIN: {reply}" if fail else None,
        reply=f"{reply}", failed_phase=Phase.AUTH if fail else None, tls=tls,
        auth_mechanisms=("PLAIN", "LOGIN"), transcript=transcript)


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


def measure(count: int, probes: int, *, trace: bool = False) -> dict[str, Any]:
    gc.collect()
    if trace:
        tracemalloc.start()
    rss_before = rss_mib()
    base = _traced()
    config: Config = load(config_text(count))
    store = ResultStore()
    store.configure(relay_infos(config), warnings=(), source="bench")
    configured = _traced()
    rss_configured = rss_mib()
    names = [r.name for r in config.relays]
    for seq in range(probes):
        for i, name in enumerate(names):
            store.record(fake_result(name, seq, fail=(seq == probes - 1 and i % 10 == 0)
                                     or (seq == probes // 2 and i % 5 == 0)))
    gc.collect()
    filled = _traced()
    tracemalloc.stop()
    rss_filled = rss_mib()
    snap = store.snapshot()
    seen: set[int] = set()
    parts = {"config": sum(deep_size(r, seen) for r in config.relays)}
    views = list(snap.relays.values())
    for f in dataclasses.fields(views[0]):
        parts[f.name] = sum(deep_size(getattr(v, f.name), seen) for v in views)
    parts["view itself"] = sum(sys.getsizeof(v) for v in views)
    per_relay = {k: round(v / count) for k, v in parts.items()}
    timings = {}
    renders: list[tuple[str, Callable[[], bytes]]] = [
        (f"/?{query}", functools.partial(_page, snap, query))
        for query in ("", "state=failing", "q=relay-00&page=3", f"page={count // 100}")
    ]
    renders.append(("/status.json", functools.partial(status_json, snap, None)))
    renders.append(("/status.json?state=failing",
                    functools.partial(status_json, snap, None, query="state=failing")))
    for label, render in renders:
        times, size = [], 0
        for _ in range(3):
            t = time.perf_counter()
            size = len(render())
            times.append(time.perf_counter() - t)
        timings[label] = {"ms": round(statistics.median(times) * 1000, 1), "kib": size // 1024}
    return {
        "relays": count, "probes_per_relay": probes, "bytes_per_relay": per_relay,
        "deep_total_per_relay": sum(per_relay.values()),
        "tracemalloc_config_per_relay": round((configured - base) / count),
        "tracemalloc_store_per_relay": round((filled - configured) / count),
        "rss_mib": round(rss_filled, 1),
        "rss_growth_per_relay": round((rss_filled - rss_before) * 2**20 / count),
        "rss_config_per_relay": round((rss_configured - rss_before) * 2**20 / count),
        "rss_after_renders_mib": round(rss_mib(), 1), "render": timings,
    }


def _page(snap: Snapshot, query: str) -> bytes:
    """The status page as the server sends it."""
    return render_status_page(snap, query=query).encode("utf-8")


def _alone(count: int, probes: int, *, trace: bool) -> dict[str, Any]:
    """One count in a process of its own, so its RSS is its own."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--relays", str(count), "--probes",
                        str(probes), "--json", out.name, *(["--tracemalloc"] if trace else [])],
                       check=True, stdout=subprocess.DEVNULL)
        data: list[dict[str, Any]] = json.loads(Path(out.name).read_text(encoding="utf-8"))
    return data[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relays", default="1000,10000",
                        help="comma-separated relay counts (default 1000,10000)")
    parser.add_argument("--probes", type=int, default=60,
                        help="results recorded per relay (default 60: an hour at 60s)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also count the allocations (slower; RSS then includes its cost)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.relays.split(",")]
    results = []
    for count in counts:
        r = (measure(count, args.probes, trace=args.tracemalloc) if len(counts) == 1
             else _alone(count, args.probes, trace=args.tracemalloc))
        results.append(r)
        print(f"\n{count:,} relays, {args.probes} results each: RSS {r['rss_mib']} MiB "
              f"({r['rss_growth_per_relay']:,} B/relay for config and store, "
              f"{r['rss_config_per_relay']:,} of them after loading the config), "
              f"{r['rss_after_renders_mib']} MiB after the renders")
        if args.tracemalloc:
            print(f"  tracemalloc: {r['tracemalloc_config_per_relay']:,} B/relay config, "
                  f"{r['tracemalloc_store_per_relay']:,} B/relay store")
        print(f"  {'component':<24}{'bytes/relay':>12}")
        for name, size in r["bytes_per_relay"].items():
            print(f"  {name:<24}{size:>12,}")
        print(f"  {'total':<24}{r['deep_total_per_relay']:>12,}")
        for label, t in r["render"].items():
            print(f"  render {label:<28}{t['ms']:>9} ms {t['kib']:>8,} KiB")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
