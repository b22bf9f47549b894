"""What /probe adds to a probe: the HTTP round trip of ``GET /probe`` against the same probe
run in-process with probe_relay, for one STARTTLS+AUTH PLAIN target on 127.0.0.1.

The target is bench/truth_relay.py in its own process, replying at once (no configured
delays), so the figure is the exporter's own cost. The exporter runs as ``smtp-canary-exporter
run`` in its own process with a module for the target; the in-process probes run here, with
the same settings. The two take turns, one probe each, for ``--runs`` rounds after a warm-up
of each, so a burst of other work on the machine lands on both. The ``probe`` command is not
timed itself: its process start (imports, config load) would dwarf both.

    python bench/probe_overhead.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PASSWORD, ROOT, TruthRelay, load, load_average, truth_relay, write_json

from exporter.relay.probe import probe_relay


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(relay: TruthRelay) -> str:
    """One relay the schedule probes hourly (nothing listens there) and the module /probe
    uses; the module's settings equal the in-process relay's."""
    settings = (f"tls: starttls, ca_file: {relay.ca}, timeout: 30s, "
                "auth: {username: bench, password_env: BENCH_PASSWORD}")
    return (f"relays:\n  - {{name: target, host: 127.0.0.1, port: {relay.port}, interval: 1h, "
            f"{settings}}}\n"
            f"modules:\n  bench: {{{settings}}}\n")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        body: bytes = resp.read()
        return body


def _start_exporter(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``smtp-canary-exporter run`` on 127.0.0.1:``port`` in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", f"--config.file={config}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        cwd=ROOT, env={**os.environ, "BENCH_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _measure(relay: TruthRelay, tmp: Path, runs: int) -> dict[str, object]:
    text = _config(relay)
    (tmp / "config.yaml").write_text(text, encoding="utf-8")
    target = load(text).relays[0]
    port = _free_port()
    proc = _start_exporter(tmp / "config.yaml", port)
    url = f"http://127.0.0.1:{port}/probe?module=bench&target=127.0.0.1:{relay.port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = await asyncio.to_thread(_get, url)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the exporter did not start") from None
                await asyncio.sleep(0.1)
        if b"smtp_probe_success 1.0" not in body:
            raise SystemExit(f"/probe failed:\n{body.decode()}")
        direct: list[float] = []
        http: list[float] = []
        await probe_relay(target)  # warm up: imports, the shared SSLContext
        for _ in range(runs):
            t0 = time.perf_counter()
            result = await probe_relay(target)
            direct.append(time.perf_counter() - t0)
            assert result.success, result
            t0 = time.perf_counter()
            body = await asyncio.to_thread(_get, url)
            http.append(time.perf_counter() - t0)
            assert b"smtp_probe_success 1.0" in body
    finally:
        proc.terminate()
        proc.wait(10)
    med_direct, med_http = statistics.median(direct), statistics.median(http)
    return {
        "runs": runs,
        "probe_relay_median_ms": round(med_direct * 1000, 2),
        "http_probe_median_ms": round(med_http * 1000, 2),
        "overhead_median_ms": round((med_http - med_direct) * 1000, 2),
        "probe_relay_min_ms": round(min(direct) * 1000, 2),
        "http_probe_min_ms": round(min(http) * 1000, 2),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="probes of each kind (default 20)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with truth_relay(tmp / "relay", greeting_ms=0, ehlo_ms=0, auth_ms=0) as relay:
            figures = asyncio.run(_measure(relay, tmp, args.runs))
    for key, val in figures.items():
        print(f"{key:24} {val}")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
