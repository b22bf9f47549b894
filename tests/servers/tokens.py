"""A recording OAuth2 token endpoint on loopback (http.server in a thread)."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


@contextlib.contextmanager
def serve_tokens() -> Iterator[TokenEndpoint]:
    """A token endpoint on 127.0.0.1:0 in a thread, for as long as the block runs."""
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode(), strict_parsing=True)
            state.forms.append({name: values[0] for name, values in form.items()})
            state.headers.append(dict(self.headers.items()))
            reply = state.next_reply()
            if reply.delay:
                state.released.wait(reply.delay)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


