"""The demo's OAuth2 token endpoint: a loopback HTTP server minting short-lived bearer tokens.

It answers the refresh_token grant for the demo client, the way a provider's token endpoint
does, so the demo's XOAUTH2 relay refreshes real tokens and the OAuth2 panels have data.
Tokens live ``lifetime`` seconds; the demo relay accepts a token only while it is valid.
``respond`` makes each reply: the tests' recording token endpoint overrides it.
"""

from __future__ import annotations

import asyncio
import http
import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass

__all__ = ["CLIENT_ID", "DemoTokenEndpoint", "HTTPReply", "HTTPRequest"]

CLIENT_ID = "smtp-canary-demo"
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class HTTPRequest:
    """One request to the endpoint; ``headers`` keep the names as the client sent them."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class HTTPReply:
    """What the endpoint answers: status, body and its content type."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"


class DemoTokenEndpoint:
    """``POST /token`` on 127.0.0.1 (port 0: the kernel picks one)."""

    path = "/token"

    def __init__(self, *, lifetime: float = 900.0) -> None:
        self.lifetime = lifetime
        self.refresh_token = secrets.token_urlsafe(24)
        self._issued: dict[str, float] = {}  # access token -> monotonic expiry
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def valid(self, token: str) -> bool:
        """True while ``token`` is one this endpoint issued and it has not expired."""
        expiry = self._issued.get(token)
        return expiry is not None and time.monotonic() < expiry

    def issue(self) -> tuple[str, float]:
        now = time.monotonic()
        self._issued = {t: e for t, e in self._issued.items() if e > now}  # forget expired
        token = secrets.token_urlsafe(24)
        self._issued[token] = now + self.lifetime
        return token, self.lifetime

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, object]]:
        """The status and JSON document for one request."""
        if path.split("?", 1)[0] != self.path:
            return 404, {"error": "not_found"}
        if method != "POST":
            return 405, {"error": "invalid_request", "error_description": "use POST"}
        form = dict(urllib.parse.parse_qsl(body.decode("latin-1")))
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") != CLIENT_ID or not secrets.compare_digest(
            form.get("refresh_token", ""), self.refresh_token
        ):
            return 400, {"error": "invalid_grant",
                         "error_description": "unknown client or refresh token"}
        token, lifetime = self.issue()
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": int(lifetime)}

    async def respond(self, request: HTTPRequest) -> HTTPReply:
        """The reply to one request: ``answer``'s status and JSON document."""
        status, doc = self.answer(request.method, request.path, request.body)
        return HTTPReply(status, json.dumps(doc).encode())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self.respond(await _read_request(reader))
            writer.write(
                f"HTTP/1.1 {reply.status} {_reason(reply.status)}\r\n"
                f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode() + reply.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, ConnectionError):
            pass  # a malformed request, or the client is gone: hang up
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def _read_request(reader: asyncio.StreamReader) -> HTTPRequest:
    """The request line, headers and body (at most 64 kB of it) of one request."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = ([*lines[0].split(" "), "", ""])[:3]
    headers = {k.strip(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    lengths = [v for k, v in headers.items() if k.lower() == "content-length"]
    length = min(int(lengths[-1] or 0) if lengths else 0, _MAX_BODY)
    body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
    return HTTPRequest(method, path, headers, body)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
