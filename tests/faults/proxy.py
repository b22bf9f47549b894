"""A fault-injecting TCP proxy for loopback tests: it forwards to a real server and, once a
client line starts with a trigger (or from the first byte), resets, hangs, trickles, delays
or replaces what passes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass
from typing import Literal

from tests.servers.loop import ServerLoop

Action = Literal["pass", "reset", "hang", "slow", "delay", "replace"]


@dataclass(frozen=True)
class Fault:
    """What happens to each proxied connection.

    ``trigger`` None acts on the server's first bytes (the greeting); otherwise on the
    server's reply to the first client line starting with ``trigger`` (``on="reply"``) or on
    the client's next bytes after that reply (``on="client"``: a TLS ClientHello, a message).
    ``keep`` bytes of the reply pass before a reset or hang."""

    action: Action
    trigger: bytes | None = None
    on: Literal["reply", "client"] = "reply"
    keep: int = 0
    delay: float = 0.0
    jitter: float = 0.0
    slow_interval: float = 1.0
    payload: bytes = b""


class _Conn:
    def __init__(self, fault: Fault, client: asyncio.StreamWriter) -> None:
        self.fault = fault
        self.client = client
        self.armed = fault.trigger is None  # the trigger line was seen
        self.fired = False  # the action happened (it happens once per connection)
        self.replied = asyncio.Event()  # the reply to the trigger went to the client
        if fault.trigger is None:
            self.replied.set()


class FaultProxy:
    """Listens on 127.0.0.1:0 in the server loop and forwards to ``upstream`` with ``fault``."""

    def __init__(self, loop: ServerLoop, upstream: int, fault: Fault) -> None:
        self.loop = loop
        self.upstream = upstream
        self.fault = fault
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0)

        self.server = loop.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])

    def drop(self) -> int:
        """Reset every live connection (the server vanished mid-session); new ones still
        connect. Returns how many were dropped."""

        async def reset_all() -> int:
            writers = list(self._writers)
            for writer in writers:
                _reset(writer)
            return len(writers)

        return self.loop.run(reset_all())

    def close(self) -> None:
        """Stop listening and drop every connection."""

        async def stop() -> None:
            self.server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self.loop.run(stop())

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(cwriter)
        swriter: asyncio.StreamWriter | None = None
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.upstream)
            self._writers.add(swriter)
            conn = _Conn(self.fault, cwriter)
            pumps = [asyncio.create_task(self._upstream(conn, creader, swriter)),
                     asyncio.create_task(self._downstream(conn, sreader, cwriter))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (cwriter, swriter):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
            self._tasks.discard(task)

    async def _upstream(self, conn: _Conn, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        fault = conn.fault
        while data := await reader.read(65536):
            if conn.fired and fault.action == "hang":
                continue  # swallowed: the server never hears from the client again
            if (fault.on == "client" and conn.replied.is_set() and not conn.fired
                    and fault.action != "pass"):
                conn.fired = True
                await self._act_on_client(conn)
                if fault.action != "delay":
                    continue
            if not conn.armed and fault.trigger is not None and any(
                line.upper().startswith(fault.trigger) for line in data.split(b"\n")
            ):
                conn.armed = True
            writer.write(data)
            await writer.drain()

    async def _act_on_client(self, conn: _Conn) -> None:
        fault = conn.fault
        if fault.action == "reset":
            _reset(conn.client)
            raise ConnectionResetError("reset by the fault proxy")
        if fault.action == "delay":
            await asyncio.sleep(fault.delay + random.uniform(0, fault.jitter))

    async def _downstream(self, conn: _Conn, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        fault = conn.fault
        while data := await reader.read(65536):
            if conn.fired and fault.action == "hang":
                continue
            if conn.armed and not conn.fired and fault.on == "reply" and fault.action != "pass":
                conn.fired = True
                await self._act_on_reply(conn, data, writer)
            else:
                writer.write(data)
                await writer.drain()
            if conn.armed:
                conn.replied.set()

    async def _act_on_reply(self, conn: _Conn, data: bytes,
                            writer: asyncio.StreamWriter) -> None:
        fault = conn.fault
        if fault.action in ("reset", "hang"):
            writer.write(data[: fault.keep])
            await writer.drain()
            if fault.action == "reset":
                await asyncio.sleep(0.05)  # the kept bytes arrive before the reset
                _reset(writer)
                raise ConnectionResetError("reset by the fault proxy")
        elif fault.action == "slow":
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(fault.slow_interval)
        elif fault.action == "delay":
            await asyncio.sleep(fault.delay + random.uniform(0, fault.jitter))
            writer.write(data)
            await writer.drain()
        else:  # replace
            writer.write(fault.payload)
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    transport.abort()
