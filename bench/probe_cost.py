"""CPU time per STARTTLS+AUTH probe: the exporter against Prometheus' blackbox_exporter.

Both probe the same relay (bench/truth_relay.py, in its own process, replying at once) in
the same run: the exporter's prober in this process, whose CPU time is measured with
time.process_time(); blackbox_exporter (Debian package prometheus-blackbox-exporter) as
its own process with a ``tcp`` module whose query_response steps do EHLO, STARTTLS, EHLO,
AUTH PLAIN and QUIT, driven through its /probe endpoint, its CPU time read from /proc.
blackbox_exporter's figure includes answering each /probe request (that is how it works);
the exporter's excludes serving /metrics, which it does once per scrape, not per probe.
The two take turns for ``--rounds`` rounds (a burst of other work on the machine then
lands on both rather than on one), and the figures are the totals over all rounds.
Only 127.0.0.1 is used.

    python bench/probe_cost.py [--probes 300] [--concurrency 10] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blackbox import blackbox
from common import (
    PASSWORD,
    TruthRelay,
    load,
    load_average,
    proc_cpu_seconds,
    relay_config,
    truth_relay,
    write_json,
)

from exporter.relay.probe import probe_relay


async def _exporter(relay: TruthRelay, probes: int, concurrency: int) -> tuple[float, int]:
    config = load(relay_config(relay, 1))
    sem = asyncio.Semaphore(concurrency)
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with sem:
            result = await probe_relay(config.relays[0])
        failed += not result.success

    await one()  # warm up: imports, the shared SSLContext
    failed = 0
    cpu0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(probes)))
    return time.process_time() - cpu0, failed


def _blackbox(
    relay: TruthRelay, tmp: Path, probes: int, concurrency: int
) -> tuple[float, int] | str:
    with blackbox(relay.port, relay.ca, tmp, password=PASSWORD) as box:
        if isinstance(box, str):
            return box

        def one(_: int = 0) -> bool:
            return box.probe()

        cpu0 = proc_cpu_seconds(box.proc.pid)
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(probes)))
        cpu = proc_cpu_seconds(box.proc.pid) - cpu0
        return cpu, results.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate exporter and blackbox_exporter this many times")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    load0 = load_average()
    ours, our_failed = 0.0, 0
    theirs: tuple[float, int] | str = (0.0, 0)
    per_round: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, truth_relay(
        Path(tmp), greeting_ms=0, ehlo_ms=0, auth_ms=0
    ) as relay:
        for _ in range(args.rounds):
            cpu, failed = asyncio.run(_exporter(relay, args.probes, args.concurrency))
            ours, our_failed = ours + cpu, our_failed + failed
            other = _blackbox(relay, Path(tmp), args.probes, args.concurrency)
            if isinstance(other, str):
                theirs = other
                continue
            if not isinstance(theirs, str):
                theirs = (theirs[0] + other[0], theirs[1] + other[1])
            per_round.append(round(cpu / other[0], 3) if other[0] else float("inf"))
    total = args.probes * args.rounds
    figures: dict[str, object] = {
        "probes": total, "rounds": args.rounds, "concurrency": args.concurrency,
        "exporter_cpu_ms_per_probe": round(ours / total * 1000, 3),
        "exporter_failed": our_failed, "load_before": load0, "load_after": load_average(),
    }
    print(f"{total} STARTTLS+AUTH PLAIN probes each ({args.rounds} rounds of {args.probes}, "
          f"taking turns), {args.concurrency} at a time")
    print(f"{'prober':<24} {'CPU ms/probe':>12} {'failed':>6}")
    print(f"{'smtp-canary-exporter':<24} {ours / total * 1000:>12.2f} {our_failed:>6}")
    if isinstance(theirs, str):
        print(f"{'blackbox_exporter':<24} {'-':>12}  ({theirs})")
        figures["blackbox_error"] = theirs
    else:
        cpu, failed = theirs
        print(f"{'blackbox_exporter':<24} {cpu / total * 1000:>12.2f} {failed:>6}")
        ratio = ours / cpu if cpu else float("inf")
        print(f"ratio exporter / blackbox_exporter: {ratio:.2f} "
              f"(per round: {', '.join(f'{r:.2f}' for r in per_round)})")
        figures.update(blackbox_cpu_ms_per_probe=round(cpu / total * 1000, 3),
                       blackbox_failed=failed, ratio=round(ratio, 3), ratio_per_round=per_round)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
