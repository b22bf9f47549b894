"""A STARTTLS+AUTH relay that delays its replies by known amounts and logs the truth.

Runs in its own process (``python bench/truth_relay.py --cert C --key K --log FILE``) and
prints its port on stdout. For every connection it writes one JSON line to the log with, on
CLOCK_MONOTONIC (shared by every process on the machine):

- ``greeting``: from accept() returning to the 220 greeting leaving (send() called);
- ``ehlo``: from the first EHLO arriving to its 250 reply leaving;
- ``auth``: from the AUTH command arriving to its 235 reply leaving;
- ``name``: the EHLO argument, so the benchmark can pair the line with its probe;
- ``accepted_at`` and ``<phase>_sent_at``: the absolute stamps, to find which side is late.

"Arriving" is the kernel's receive timestamp of the packet (SO_TIMESTAMPNS, read with
recvmsg), so time this relay spends on other connections before it reads a command does not
shorten the truth. The delays are scheduled on a timer; when they overshoot, the log records
the real send time, so the truth stays exact. One selector loop, no asyncio, no threads:
the relay's own overhead is a few microseconds a step. TLS runs through ssl.MemoryBIO on the
same non-blocking sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import json
import os
import selectors
import signal
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from typing import TextIO

CLOCK = time.CLOCK_MONOTONIC
_TS_SPACE = socket.CMSG_SPACE(16)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def mono() -> float:
    return time.clock_gettime(CLOCK)


class Conn:
    """One SMTP session, driven by the loop: plain lines, then TLS through memory BIOs."""

    def __init__(self, relay: Relay, sock: socket.socket, accepted: float) -> None:
        self.relay = relay
        self.sock = sock
        self.accepted = accepted
        self.inbuf = b""
        self.tls: ssl.SSLObject | None = None
        self.bio_in = ssl.MemoryBIO()
        self.bio_out = ssl.MemoryBIO()
        self.handshaking = False
        self.rx_at = 0.0  # kernel receive time (monotonic) of the last packet read
        self.truth: dict[str, float | str] = {}
        self.busy = False  # a delayed reply is pending; later commands wait for it
        self.closed = False

    # -- I/O -------------------------------------------------------------------------------

    def on_readable(self) -> None:
        try:
            data, anc, _, _ = self.sock.recvmsg(65536, _TS_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        real_now, mono_now = time.time(), mono()
        self.rx_at = mono_now
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                self.rx_at = mono_now - max(0.0, real_now - (sec + nsec / 1e9))
        if not data:
            self.close()
            return
        if self.tls is None:
            self.inbuf += data
        else:
            self.bio_in.write(data)
            if self.handshaking:
                self._handshake()
                if self.handshaking:
                    return
            self._read_tls()
        self._process()

    def _read_tls(self) -> None:
        assert self.tls is not None
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLError, OSError):
                self.close()
                return
            if not chunk:
                self.close()
                return
            self.inbuf += chunk
        self._flush_tls()

    def _handshake(self) -> None:
        assert self.tls is not None
        try:
            self.tls.do_handshake()
            self.handshaking = False
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError):
            self.close()
            return
        self._flush_tls()

    def _flush_tls(self) -> None:
        out = self.bio_out.read()
        if out:
            self._send_raw(out)

    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)  # small replies on loopback: never blocks in practice
        except OSError:
            self.close()

    def send_line(self, line: bytes, truth: str | None = None, since: float = 0.0) -> None:
        if self.closed:
            return
        if self.tls is None:
            payload = line
        else:
            self.tls.write(line)
            payload = self.bio_out.read()
        if truth is not None:
            now = mono()
            self.truth[truth] = now - since
            self.truth[truth + "_sent_at"] = now
        self._send_raw(payload)

    # -- SMTP ------------------------------------------------------------------------------

    def _process(self) -> None:
        while not self.busy and not self.closed and b"\r\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\r\n", 1)
            self._command(line)

    def _later(self, delay: float, since: float, reply: bytes, truth: str) -> None:
        self.busy = True

        def fire() -> None:
            self.busy = False
            self.send_line(reply, truth, since)
            self._process()

        self.relay.at(since + delay, fire)

    def _command(self, line: bytes) -> None:
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        d = self.relay.delays
        if verb == b"EHLO":
            reply = b"250-truth.localhost\r\n250-PIPELINING\r\n"
            reply += (b"250 AUTH PLAIN LOGIN\r\n" if self.tls else b"250 STARTTLS\r\n")
            if self.tls is None:
                self.truth["name"] = arg.decode("ascii", "replace")
                self._later(d["ehlo"], self.rx_at, reply, "ehlo")
            else:
                self.send_line(reply)
        elif verb == b"STARTTLS" and self.tls is None:
            self.send_line(b"220 2.0.0 go ahead\r\n")
            self.tls = self.relay.ctx.wrap_bio(self.bio_in, self.bio_out, server_side=True)
            self.handshaking = True
            if self.inbuf:
                self.bio_in.write(self.inbuf)
                self.inbuf = b""
                self._handshake()
        elif verb == b"AUTH":
            self._later(d["auth"], self.rx_at, b"235 2.7.0 authenticated\r\n", "auth")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.send_line(b"250 ok\r\n")
        elif verb == b"QUIT":
            self.relay.log(self.truth)
            self.send_line(b"221 2.0.0 bye\r\n")
            self.close()
        else:
            self.send_line(b"502 5.5.2 not here\r\n")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.drop(self)
        self.sock.close()


class Relay:
    def __init__(self, ctx: ssl.SSLContext, delays: dict[str, float], out: TextIO) -> None:
        self.ctx = ctx
        self.delays = delays
        self.out = out
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.conns: dict[int, Conn] = {}
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (when, self.seq, fn))

    def drop(self, conn: Conn) -> None:
        self.conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)

    def log(self, truth: dict[str, float | str]) -> None:
        self.out.write(json.dumps(truth) + "\n")
        self.out.flush()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            accepted = mono()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            conn = Conn(self, sock, accepted)
            conn.truth["accepted_at"] = accepted
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            self.at(accepted + self.delays["greeting"], functools.partial(
                conn.send_line, b"220 truth.localhost ESMTP\r\n", "greeting", conn.accepted))

    def serve(self) -> None:
        while True:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - mono())
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    self._accept()
                else:
                    key.data.on_readable()
            now = mono()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()


def _prioritize(how: str) -> None:
    """Wake this process first: its accept() stamp is the start of the greeting's truth, and
    on a busy machine a sleeping process can wait milliseconds for a CPU. Best effort:
    ``realtime`` (SCHED_FIFO, root only), ``nice`` (-10) or ``none``."""
    if how == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            return
        except (OSError, AttributeError):
            how = "nice"
    if how == "nice":
        with contextlib.suppress(OSError):
            os.nice(-10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--greeting-ms", type=float, default=20)
    parser.add_argument("--ehlo-ms", type=float, default=50)
    parser.add_argument("--auth-ms", type=float, default=200)
    parser.add_argument("--priority", choices=("realtime", "nice", "none"), default="realtime")
    args = parser.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    delays = {"greeting": args.greeting_ms / 1000, "ehlo": args.ehlo_ms / 1000,
              "auth": args.auth_ms / 1000}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _prioritize(args.priority)
    with open(args.log, "a", encoding="utf-8") as out:
        relay = Relay(ctx, delays, out)
        print(relay.listener.getsockname()[1], flush=True)
        relay.serve()


if __name__ == "__main__":
    main()
