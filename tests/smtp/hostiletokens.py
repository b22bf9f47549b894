"""Hostile OAuth2 token endpoints on loopback: answers as raw bytes, sent whole or dripped one
byte at a time, and what the server saw (requests, connections still open)."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.servers.loop import ServerLoop

Answer = Callable[[bytes], bytes]  # the request's body -> the whole raw answer


def http_answer(status: int, body: bytes, *, headers: str | None = None) -> bytes:
    """A complete HTTP/1.1 answer; ``headers`` replaces the usual Content-Type and length."""
    if headers is None:
        headers = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    phrase = http.HTTPStatus(status).phrase
    return f"HTTP/1.1 {status} {phrase}\r\n{headers}Connection: close\r\n\r\n".encode() + body


def json_answer(status: int, doc: object) -> bytes:
    return http_answer(status, json.dumps(doc).encode())


class Echo:
    """Answers 401 invalid_client with a description that repeats the request's secrets, in
    turn: the whole form as posted, then each secret raw, URL-encoded, quote_plus-encoded,
    split by a line break and between control characters (each short enough to be shown
    whole)."""

    def __init__(self, *, also: str | None = None) -> None:
        self.count = 0
        self.also = also  # one more secret to echo, in the error code

    def __call__(self, body: bytes) -> bytes:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        said = [f"you sent\r\n{body.decode()}"]
        for name in ("client_secret", "refresh_token"):
            if name in form:
                secret = form[name]
                said.append("\n".join([
                    secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                    "\r\n".join(secret.split(" ")), f"\t{secret}\x0b"]))
        description = said[self.count % len(said)]
        self.count += 1
        error = "invalid_client" if self.also is None else f"invalid_client {self.also}"
        return json_answer(401, {"error": error, "error_description": description})


@dataclass
class RawEndpoint:
    """What a raw endpoint saw: request bodies, connections open now and at most at once."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    open_now: int = 0
    open_max: int = 0
    dripped: int = 0  # bytes sent by dripping endpoints, all connections together


@contextlib.contextmanager
def serve_raw(
    loop: ServerLoop,
    answer: Answer,
    *,
    drip: float = 0.0,
    max_drip: int = 40,
    ctx: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> Iterator[RawEndpoint]:
    """An endpoint on 127.0.0.1:0 answering every request with ``answer(body)``: at once, or
    with ``drip`` one byte every ``drip`` seconds, at most ``max_drip`` bytes, until the
    client hangs up."""
    state = RawEndpoint()
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        state.open_now += 1
        state.open_max = max(state.open_max, state.open_now)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
            body = await reader.readexactly(int(found.group(1)) if found else 0)
            state.bodies.append(body)
            data = answer(body)
            if not drip:
                writer.write(data)
                await writer.drain()
                return
            gone = asyncio.ensure_future(reader.read(1))  # done when the client hangs up
            try:
                for i in range(min(len(data), max_drip)):
                    writer.write(data[i : i + 1])
                    await writer.drain()
                    state.dripped += 1
                    done, _ = await asyncio.wait({gone}, timeout=drip)
                    if done:
                        break
            finally:
                gone.cancel()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            state.open_now -= 1
            handlers.discard(task)
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(serve, host, 0, ssl=ctx)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    server = loop.run(start())
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ctx is not None else "http"
    state.url = f"{scheme}://{host}:{port}/oauth2/token"
    try:
        yield state
    finally:
        loop.run(stop(server))
