"""A recording OAuth2 token endpoint on loopback: the demo's endpoint, answering as scripted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from exporter.demo.tokens import DemoTokenEndpoint, HTTPReply, HTTPRequest
from tests.servers.loop import ServerLoop


@dataclass
class Reply:
    """What the token endpoint answers to one request."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/json"


def token_reply(
    access_token: str, *, expires_in: object = 3600, refresh_token: str | None = None
) -> Reply:
    doc: dict[str, object] = {"access_token": access_token, "token_type": "Bearer"}
    if expires_in is not None:
        doc["expires_in"] = expires_in
    if refresh_token is not None:
        doc["refresh_token"] = refresh_token
    return Reply(body=json.dumps(doc).encode())


def error_reply(status: int, error: str, description: str) -> Reply:
    doc = {"error": error, "error_description": description}
    return Reply(status=status, body=json.dumps(doc).encode())


@dataclass
class TokenEndpoint:
    """A recording token endpoint: answers from ``replies`` in order, then ``default``."""

    url: str = ""
    default: Reply = field(default_factory=lambda: token_reply("at-1"))
    replies: deque[Reply] = field(default_factory=deque)
    forms: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def next_reply(self) -> Reply:
        return self.replies.popleft() if self.replies else self.default


class _Scripted(DemoTokenEndpoint):
    """The demo's token endpoint, recording each request and answering from ``state``."""

    path = "/oauth2/token"

    def __init__(self, state: TokenEndpoint) -> None:
        super().__init__()
        self.state = state

    async def respond(self, request: HTTPRequest) -> HTTPReply:
        form = urllib.parse.parse_qs(request.body.decode(), strict_parsing=True)
        self.state.forms.append({name: values[0] for name, values in form.items()})
        self.state.headers.append(dict(request.headers))
        reply = self.state.next_reply()
        if reply.delay:
            await asyncio.to_thread(self.state.released.wait, reply.delay)
        return HTTPReply(reply.status, reply.body, reply.content_type)


@contextlib.contextmanager
def serve_tokens() -> Iterator[TokenEndpoint]:
    """A token endpoint on 127.0.0.1:0, in a loop thread of its own, while the block runs."""
    state = TokenEndpoint()
    loop = ServerLoop()
    server = _Scripted(state)
    loop.run(server.start())
    state.url = server.url
    try:
        yield state
    finally:
        state.released.set()
        loop.run(server.stop())
        loop.stop()
