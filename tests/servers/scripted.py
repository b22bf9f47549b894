"""Small asyncio listeners that behave exactly as a test needs: silent, slow, rude, wrong."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable

from tests.servers.loop import ServerLoop

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

EHLO_REPLY = b"250-scripted.example.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"


def start_scripted(loop: ServerLoop, handler: Handler, *, ctx: ssl.SSLContext | None = None) -> int:
    """Serve ``handler`` on 127.0.0.1:0 in the server loop; return the port."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(guarded, "127.0.0.1", 0, ssl=ctx)

    server = loop.run(start())
    return int(server.sockets[0].getsockname()[1])


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and say nothing, ever."""
    await asyncio.sleep(3600)


def greeting_then(
    greeting: bytes, *, delay: float = 0.0, replies: dict[bytes, bytes] | None = None,
    close_after: bytes | None = None, byte_delay: dict[bytes, float] | None = None,
) -> Handler:
    """Send ``greeting`` (after ``delay``), then answer each command by its verb."""
    table = {b"EHLO": EHLO_REPLY, b"QUIT": b"221 2.0.0 Bye\r\n", b"RSET": b"250 Ok\r\n"}
    table.update(replies or {})

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if delay:
            await asyncio.sleep(delay)
        writer.write(greeting)
        await writer.drain()
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == close_after:
                return
            reply = table.get(verb, b"502 5.5.2 Error: command not recognized\r\n")
            per_byte = (byte_delay or {}).get(verb)
            if per_byte:
                for i in range(len(reply)):
                    writer.write(reply[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(per_byte)
            else:
                writer.write(reply)
                await writer.drain()
            if verb == b"QUIT":
                return

    return handler


def postscreen_greeting(delay: float) -> Handler:
    """A multi-line 220 greeting whose last line comes ``delay`` seconds after the first."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mx.example.test ESMTP checking you\r\n")
        await writer.drain()
        await asyncio.sleep(delay)
        writer.write(b"220 mx.example.test ESMTP ready\r\n")
        await writer.drain()
        await greeting_then(b"")(reader, writer)

    return handler


def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class BlackHole:
    """A listener whose accept queue is full, so new SYNs are dropped: a connect timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self._fill: list[socket.socket] = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", self.port))
            self._fill.append(c)

    def close(self) -> None:
        for c in self._fill:
            c.close()
        self.sock.close()
