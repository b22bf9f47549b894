"""Canary detection delay: from a message being stored in the mailbox to the watcher seeing it,
with IMAP IDLE and with polling, against a real Dovecot on 127.0.0.1.

Needs Dovecot (testservers/install-dovecot.sh) and root, like the canary tests; without
them (or with --demo) it measures against the exporter's demo IMAP server, and says so.

    python bench/canary_detection.py [--messages 20] [--poll-interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trustme  # noqa: E402

from exporter.canary.mailbox import MailboxStatus, MailboxWatcher  # noqa: E402
from exporter.canary.message import compose_canary, new_token  # noqa: E402
from exporter.canary.result import Arrival  # noqa: E402
from exporter.config import parse_config  # noqa: E402
from exporter.demo.certs import make_certificate  # noqa: E402
from exporter.demo.imap import DemoIMAPServer  # noqa: E402
from exporter.demo.mailstore import MailStore  # noqa: E402
from testservers.dovecot import dovecot_available, start_dovecot  # noqa: E402

USERS = {"canary": "bench-pass"}


class _Demo:
    """The exporter's demo IMAP server (in this process), when Dovecot is not installed."""

    def __init__(self, server: DemoIMAPServer, ca_file: str) -> None:
        self.server, self.ca_file = server, ca_file
        self.imaps_port = server.imaps_port

    def deliver(self, user: str, raw: bytes) -> None:
        self.server.store.deliver(user, raw)

    def stop(self) -> None:
        pass


async def _start_demo(tmp: Path) -> _Demo:
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before any timing
    ca_file, cert, key = make_certificate(tmp)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = DemoIMAPServer(MailStore(), users=USERS, ssl_context=ctx)
    await server.start()
    return _Demo(server, str(ca_file))


async def _measure(
    idle: bool, messages: int, poll: float, tmp: Path, ca: trustme.CA, *, demo: bool = False
) -> list[float]:
    where = tmp / ("idle" if idle else "poll")
    server: Any = (await _start_demo(where) if demo
                   else start_dovecot(where, users=USERS, ca=ca, idle=idle))
    try:
        config = parse_config(
            "mailboxes:\n  - {name: box, host: 127.0.0.1, port: " + str(server.imaps_port)
            + ", tls: implicit, ca_file: " + server.ca_file + f", poll_interval: {poll:g}s,"
            f" idle: {'true' if idle else 'false'},"
            " trusted_authserv_ids: [x], auth: {username: canary, password_env: P}}\n"
            "relays:\n  - {name: r, host: 127.0.0.1, port: 25, tls: none,"
            " canary: {from: a@example.test, to: [{address: b@example.test, mailbox: box}]}}\n",
            environ={"P": USERS["canary"]},
        )
        loop = asyncio.get_running_loop()
        seen: dict[str, float] = {}
        up = asyncio.Event()
        arrived = asyncio.Event()

        def on_arrival(arrival: Arrival) -> None:
            seen[arrival.token] = arrival.seen_at
            arrived.set()

        def on_status(status: MailboxStatus) -> None:
            if status.up:
                up.set()

        watcher = MailboxWatcher(config.mailboxes[0], instance="bench", loop=loop,
                                 on_arrival=on_arrival, on_status=on_status)
        watcher.start()
        await asyncio.wait_for(up.wait(), 10)
        delays: list[float] = []
        for _ in range(messages):
            # Polling: land at different points of the cycle, as real deliveries do.
            await asyncio.sleep(0.3 + (poll * 0.37 if not idle else 0.0))
            token = new_token("bench")
            raw = compose_canary(token=token, relay="r", sender="a@example.test",
                                 recipients=["b@example.test"], now=time.time())
            if demo:  # its store lives on this loop
                server.deliver("canary", raw)
            else:
                await asyncio.to_thread(server.deliver, "canary", raw)
            stored = time.time()
            deadline = time.monotonic() + poll + 10
            while token not in seen and time.monotonic() < deadline:
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
            if token in seen:
                delays.append(seen[token] - stored)
        await asyncio.to_thread(watcher.stop)
        return delays
    finally:
        if demo:
            await server.server.stop()
        else:
            server.stop()


def _row(name: str, delays: list[float], sent: int) -> str:
    if not delays:
        return f"{name:<22} {sent:>5} {0:>5}"
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"{name:<22} {sent:>5} {len(delays):>5} {statistics.median(delays) * 1000:>9.1f}"
            f" {p95 * 1000:>9.1f} {max(delays) * 1000:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--demo", action="store_true",
                        help="use the exporter's demo IMAP server even if Dovecot is installed")
    args = parser.parse_args()
    server_name = "Dovecot"
    demo = args.demo or not dovecot_available()
    if demo:
        server_name = "the demo IMAP server (not Dovecot)"
        if not args.demo:
            print("canary_detection: Dovecot is not installed (testservers/install-dovecot.sh)"
                  " or not root: measuring against the exporter's demo IMAP server instead")
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        idle = asyncio.run(_measure(True, args.messages, args.poll_interval, Path(tmp), ca,
                                    demo=demo))
        poll = asyncio.run(_measure(False, args.messages, args.poll_interval, Path(tmp), ca,
                                    demo=demo))
    print(f"server: {server_name}")
    print(f"{'mode':<22} {'sent':>5} {'seen':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    print(_row("IDLE", idle, args.messages))
    print(_row(f"polling every {args.poll_interval:g}s", poll, args.messages))
    _write_json(args.json, {
        "server": server_name, "messages": args.messages, "poll_interval_s": args.poll_interval,
        "rows": [_figures("IDLE", idle), _figures(f"polling every {args.poll_interval:g}s", poll)],
    })


def _figures(mode: str, delays: list[float]) -> dict[str, object]:
    ordered = sorted(delays)
    if not ordered:
        return {"mode": mode, "seen": 0}
    return {
        "mode": mode, "seen": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def _write_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
