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
import base64
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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

BLACKBOX = "prometheus-blackbox-exporter"

MODULE = """modules:
  smtp_starttls_auth:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {ca}
        server_name: localhost
      query_response:
        - expect: "^220 "
        - send: "EHLO r0000.bench.test\\r"
        - expect: "^250 STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220 "
        - starttls: true
        - send: "EHLO r0000.bench.test\\r"
        - expect: "^250 AUTH"
        - send: "AUTH PLAIN {auth}\\r"
        - expect: "^235 "
        - send: "QUIT\\r"
        - expect: "^221 "
"""


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _blackbox(
    relay: TruthRelay, tmp: Path, probes: int, concurrency: int
) -> tuple[float, int] | str:
    exe = shutil.which(BLACKBOX)
    if exe is None:
        return f"{BLACKBOX} is not installed (apt-get install {BLACKBOX})"
    auth = base64.b64encode(f"\0bench\0{PASSWORD}".encode()).decode()
    conf = tmp / "blackbox.yml"
    conf.write_text(MODULE.format(ca=relay.ca, auth=auth), encoding="utf-8")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = (f"http://127.0.0.1:{port}/probe?module=smtp_starttls_auth"
           f"&target=127.0.0.1:{relay.port}")

    def one(_: int = 0) -> bool:
        with urllib.request.urlopen(url, timeout=30) as r:
            return b"\nprobe_success 1" in r.read()

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ok = one()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return f"{BLACKBOX} did not start"
                time.sleep(0.1)
        if not ok:
            return f"{BLACKBOX}'s probe failed; its module is in {conf}"
        cpu0 = proc_cpu_seconds(proc.pid)
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(probes)))
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        return cpu, results.count(False)
    finally:
        proc.terminate()
        proc.wait(10)


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
