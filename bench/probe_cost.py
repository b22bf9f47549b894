"""CPU time per STARTTLS+AUTH probe, and how far measured phases stray from injected delays.

A relay in a separate process delays its greeting, EHLO reply and AUTH reply by known amounts;
this process probes it with the exporter's prober and prints a table. Only 127.0.0.1 is used.

    python bench/probe_cost.py [--probes 200] [--concurrency 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import RelayConfig, parse_config
from exporter.demo import make_certificate
from exporter.probes.smtp import probe_relay
from exporter.results import Phase

DELAYS = {Phase.GREETING: 0.020, Phase.EHLO: 0.050, Phase.AUTH: 0.020}


def _serve(cert: str, key: str, port_out: multiprocessing.connection.Connection) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(DELAYS[Phase.GREETING])
            writer.write(b"220 bench.localhost ESMTP\r\n")
            tls = False
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    if not tls:
                        await asyncio.sleep(DELAYS[Phase.EHLO])
                    writer.write(b"250-bench.localhost\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
                elif verb == b"STARTTLS":
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(ctx)
                    tls = True
                elif verb == b"AUTH":
                    await asyncio.sleep(DELAYS[Phase.AUTH])
                    writer.write(b"235 2.7.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(session, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _round(
    relay: RelayConfig, probes: int, concurrency: int
) -> tuple[float, dict[Phase, list[float]], int]:
    sem = asyncio.Semaphore(concurrency)
    errors: dict[Phase, list[float]] = {p: [] for p in DELAYS}
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with sem:
            result = await probe_relay(relay)
        if not result.success:
            failures += 1
            return
        for phase, delay in DELAYS.items():
            errors[phase].append(result.phases[phase] - delay)

    cpu0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(probes)))
    cpu = time.process_time() - cpu0
    return cpu / probes, errors, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--concurrency", default="1,10,50")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_certificate(Path(tmp))
        recv, send = multiprocessing.Pipe(duplex=False)
        server = multiprocessing.Process(target=_serve, args=(str(cert), str(key), send),
                                         daemon=True)
        server.start()
        port = recv.recv()
        config = parse_config(
            f"relays:\n  - {{name: bench, host: 127.0.0.1, port: {port}, tls: starttls,"
            f" ca_file: {ca}, timeout: 10s, interval: 60s,"
            f" auth: {{username: u, password_env: P}}}}\n",
            environ={"P": "pw"},
        )
        relay = config.relays[0]
        print("injected delays: " + ", ".join(f"{p.value} {d * 1000:.0f} ms"
                                                for p, d in DELAYS.items()))
        print(f"{'concurrency':>11} {'probes':>6} {'cpu/probe ms':>12} "
              + " ".join(f"{p.value + ' err p50/p99 ms':>24}" for p in DELAYS) + "  failed")
        for conc in (int(c) for c in args.concurrency.split(",")):
            cpu, errors, failed = asyncio.run(_round(relay, args.probes, conc))
            cells = []
            for phase in DELAYS:
                e = errors[phase]
                cells.append(f"{statistics.median(e) * 1000:+11.2f} /{_pct(e, 0.99) * 1000:+8.2f}"
                             if e else f"{'-':>24}")
            print(f"{conc:>11} {args.probes:>6} {cpu * 1000:>12.2f} "
                  + " ".join(f"{c:>24}" for c in cells) + f"  {failed}")
        server.kill()


if __name__ == "__main__":
    main()
