"""An IMAP server on loopback that misbehaves after LOGIN in one chosen way: it floods untagged
responses, answers a FETCH with a huge literal, echoes the password in its NO, or drops the
connection. Everything it sends is bounded in bytes and time, and written lazily (drained)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from typing import Literal

from tests.servers.loop import ServerLoop

Mode = Literal["flood", "literal", "echo", "drop"]
CHUNK = 64 * 1024
# An untagged response line of the flood: 1 KiB.
FLOOD_LINE = b"* OK [ALERT] flood " + b"x" * (1024 - 21) + b"\r\n"


class HostileIMAP:
    """Serves IMAP well enough for the watcher to log in, list, select and search, and turns
    hostile as ``mode`` says. ``armed`` holds the flood back until the test has its baseline.
    """

    def __init__(self, loop: ServerLoop, mode: Mode, *, ssl_context: ssl.SSLContext | None = None,
                 armed: bool = True, max_bytes: int = 200 << 20, max_seconds: float = 20.0,
                 literal_size: int = 300 << 20,
                 drop_on: tuple[bytes, ...] | None = None) -> None:
        self.mode = mode
        self.drop_on = drop_on  # "drop": the commands that end it (None: any after LOGIN)
        self.armed = armed
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.literal_size = literal_size
        self.connections: list[float] = []  # time.monotonic() of each accepted connection
        self.sent = 0  # bytes of flood or literal written, all connections
        self.flooding = 0  # connections flooding now
        self._loop = loop
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self.port = 0
        loop.run(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), 5)

        self._loop.run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(time.monotonic())
        try:
            writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile ready\r\n")
            logged_in = False
            while True:
                line = await asyncio.wait_for(reader.readline(), 60)
                if not line:
                    return
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                command, _, args = rest.partition(b" ")
                command = command.upper()
                if command == b"UID":
                    sub, _, args = args.partition(b" ")
                    command = b"UID " + sub.upper()
                if logged_in and command != b"CAPABILITY" and self.armed:
                    if self.mode == "flood":
                        await self._flood(reader, writer)
                        return
                    if self.mode == "drop" and (self.drop_on is None
                                                or command in self.drop_on):
                        return
                if command == b"LOGIN":
                    if self.mode == "echo":
                        writer.write(tag + b" NO [AUTHENTICATIONFAILED] " + _echo(args) + b"\r\n")
                        continue
                    logged_in = True
                    writer.write(tag + b" OK LOGIN completed\r\n")
                elif command == b"AUTHENTICATE":
                    writer.write(b"+ \r\n")
                    await writer.drain()
                    payload = (await reader.readline()).strip()
                    if self.mode == "echo":
                        writer.write(tag + b" NO [AUTHENTICATIONFAILED] " + _echo(payload)
                                     + b"\r\n")
                        continue
                    logged_in = True
                    writer.write(tag + b" OK AUTHENTICATE completed\r\n")
                elif command == b"UID FETCH" and self.mode == "literal":
                    await self._literal(reader, writer, tag)
                    return
                else:
                    writer.write(_answer(tag, command, self.mode == "literal" and self.armed))
                    if command == b"LOGOUT":
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _flood(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = FLOOD_LINE * (CHUNK // len(FLOOD_LINE))
        deadline = time.monotonic() + self.max_seconds
        sent = 0
        self.flooding += 1
        try:
            while (sent < self.max_bytes and time.monotonic() < deadline
                   and not _gone(reader, writer)):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self.sent += len(chunk)
        finally:
            self.flooding -= 1

    async def _literal(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       tag: bytes) -> None:
        size = self.literal_size
        writer.write(b"* 1 FETCH (UID 1 INTERNALDATE \"01-Jan-2026 00:00:00 +0000\" "
                     b"BODY[HEADER] {%d}\r\n" % size)
        chunk = b"X-Filler: " + b"y" * (CHUNK - 12) + b"\r\n"
        deadline = time.monotonic() + self.max_seconds
        left = size
        while left > 0 and time.monotonic() < deadline and not _gone(reader, writer):
            piece = chunk[:left]
            writer.write(piece)
            await writer.drain()
            left -= len(piece)
            self.sent += len(piece)
        writer.write(b")\r\n" + tag + b" OK FETCH completed\r\n")
        await writer.drain()


def _gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the client closed the connection: asyncio's TLS transport may go on taking
    writes, and dropping them, on a socket that is no longer connected."""
    if writer.is_closing() or reader.at_eof() or reader.exception() is not None:
        return True
    sock = writer.get_extra_info("socket")
    try:
        sock.getpeername()
    except (OSError, AttributeError):
        return True
    return False


def _echo(args: bytes) -> bytes:
    """What a careless server says when it refuses a login: the arguments, and the decoded
    PLAIN payload, verbatim (and a byte that is not ASCII, as some do)."""
    decoded = b""
    with contextlib.suppress(ValueError):
        decoded = base64.b64decode(args, validate=True).replace(b"\0", b" ")
    return b"login rejected for " + args + b" " + decoded + b" \xff"


def _answer(tag: bytes, command: bytes, found: bool) -> bytes:
    if command == b"CAPABILITY":
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS\r\n" + tag + b" OK done\r\n"
    if command == b"LIST":
        return b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK LIST done\r\n"
    if command in (b"SELECT", b"EXAMINE"):
        return (b"* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] ok\r\n"
                + tag + b" OK [READ-WRITE] SELECT done\r\n")
    if command == b"UID SEARCH":
        return (b"* SEARCH 1\r\n" if found else b"* SEARCH\r\n") + tag + b" OK SEARCH done\r\n"
    if command == b"LOGOUT":
        return b"* BYE bye\r\n" + tag + b" OK LOGOUT done\r\n"
    return tag + b" OK done\r\n"
