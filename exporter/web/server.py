"""HTTP endpoints: /metrics, /probe, /-/healthy, /-/ready, /-/reload, /status.json and the
status page."""

from __future__ import annotations

import gzip
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from exporter.canary import CanarySnapshot
from exporter.dns import DNSSnapshot
from exporter.exposition import gzip_chunks
from exporter.peertext import clean
from exporter.relay import Snapshot
from exporter.web.guard import WebGuard, cross_site
from exporter.web.probe import HEADER, ProbeEndpoint
from exporter.web.statusjson import status_json
from exporter.web.statuspage import render_status_page

__all__ = ["Exposition", "WebServer", "parse_listen_address"]

# /metrics for an Accept header: UTF-8 chunks and their content type.
Exposition = Callable[[str], tuple[list[bytes], str]]

log = logging.getLogger(__name__)

MAX_BODY = 4096  # the largest request body read; /-/reload needs none
# After answering without reading a body, this much of it is read and dropped (within this
# time) before the connection closes, so the client sees the answer rather than a reset.
_LINGER_BYTES = 65536
_LINGER_SECONDS = 1.0
_LENGTH = re.compile(r"[0-9]{1,12}")


def _describe(exc: BaseException) -> str:
    return clean(f"{type(exc).__name__}: {exc}", limit=300)


def _client(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``[V6]:PORT``; raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"--web.listen-address {text!r}: use HOST:PORT, e.g. :9925 or 127.0.0.1:9925"
        )
    return host.strip("[]"), int(port)


class _Server4(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET
    guard: WebGuard | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line in the configured format instead of a traceback on stderr: a client
        that went away or broke TLS is routine (debug); anything else is a bug (error)."""
        exc = sys.exc_info()[1]
        if exc is None:
            return
        fields = {"client": _client(client_address), "error": _describe(exc)}
        if isinstance(exc, OSError):
            log.debug("HTTP connection ended with an error", extra=fields)
        else:
            log.error("HTTP connection failed", extra=fields)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake happens here, in the connection's own thread."""
        guard = self.guard
        if guard is None or not guard.tls:
            super().finish_request(request, client_address)
            return
        wrapped = guard.wrap(request)
        if wrapped is None:
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class _Server6(_Server4):
    address_family = socket.AF_INET6


class _DualStack(_Server6):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _server_for(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> _Server4:
    if host in ("", "::"):
        try:
            return _DualStack(("::", port), handler)
        except OSError:
            return _Server4(("0.0.0.0", port), handler)  # noqa: S104 - exporters listen widely
    cls = _Server6 if ":" in host else _Server4
    return cls((host, port), handler)


class WebServer:
    """Serves the endpoints from its own threads; everything it shows comes from snapshots."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        registry: CollectorRegistry,
        snapshot: Callable[[], Snapshot],
        reload: Callable[[], tuple[bool, str]],
        ready: Callable[[], bool],
        canaries: Callable[[], CanarySnapshot] | None = None,
        dns: Callable[[], DNSSnapshot] | None = None,
        guard: WebGuard | None = None,
        probe: ProbeEndpoint | None = None,
        exposition: Exposition | None = None,
    ) -> None:
        host, port = address
        self.guard = guard or WebGuard(None)
        handler = _make_handler(registry, snapshot, reload, ready, canaries, dns, self.guard,
                                probe, exposition)
        self._httpd = _server_for(host, port, handler)
        self._httpd.guard = self.guard
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="http", daemon=True
        )

    @property
    def scheme(self) -> str:
        return "https" if self.guard.tls else "http"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_handler(
    registry: CollectorRegistry,
    snapshot: Callable[[], Snapshot],
    reload: Callable[[], tuple[bool, str]],
    ready: Callable[[], bool],
    canaries: Callable[[], CanarySnapshot] | None,
    dns: Callable[[], DNSSnapshot] | None,
    guard: WebGuard,
    probe: ProbeEndpoint | None = None,
    exposition: Exposition | None = None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "smtp-canary-exporter"
        protocol_version = "HTTP/1.1"
        timeout = 60  # an idle or trickling client frees its thread after this
        _body_unread = False  # the request came with a body this handler did not read
        _responded = False

        def _admitted(self) -> bool:
            """Rate limit and basic auth from the web config; answers 429 or 401 itself."""
            status = guard.admit(self.headers.get("Authorization"))
            if status == 429:
                self._text(429, "Too many requests.\n")
            elif status == 401:
                self._text(401, "Unauthorized.\n",
                           WWW_Authenticate='Basic realm="smtp-canary-exporter"')
            return status == 200

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http request", extra={"client": _client(self.client_address),
                                             "line": clean(format % args, limit=300)})

        def handle_expect_100(self) -> bool:
            """No "100 Continue" before the request is admitted: a body is asked for (and
            read) only by _read_body."""
            return True

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self._send_chunks(status, [body], content_type, **headers)

        def _send_chunks(self, status: int, chunks: list[bytes], content_type: str,
                         **headers: str) -> None:
            """One response whose body is the chunks, written one by one."""
            self._responded = True
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
            self.send_header("Cache-Control", "no-store")
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            for key, value in guard.headers():
                self.send_header(key, value)
            if self._body_unread:  # what follows on this connection is not a request
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                for chunk in chunks:
                    self.wfile.write(chunk)

        def _text(self, status: int, text: str, **headers: str) -> None:
            self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8", **headers)

        def _run(self, action: Callable[[], None]) -> None:
            """Runs one request: a failure is one log line and a 500, and a body left unread
            closes the connection after a bounded drain."""
            self._responded = False
            self._body_unread = (self.headers.get("Transfer-Encoding") is not None
                                 or (self.headers.get("Content-Length") or "0").strip() != "0")
            try:
                action()
            except OSError:
                raise  # the client went away: the server's handle_error logs it
            except Exception as exc:
                log.error("HTTP request failed", extra={
                    "client": _client(self.client_address),
                    "request": clean(self.requestline, limit=300), "error": _describe(exc)})
                self.close_connection = True
                if not self._responded:
                    self._body_unread = True  # closes the connection
                    self._text(500, "Internal error; the exporter's log has the cause.\n")
            if self._body_unread:
                self._linger()

        def _linger(self) -> None:
            self.close_connection = True
            try:
                self.wfile.flush()
                if not isinstance(self.connection, ssl.SSLSocket):
                    self.connection.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + _LINGER_SECONDS
                left = _LINGER_BYTES
                while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                    self.connection.settimeout(remaining)
                    chunk = self.rfile.read1(min(left, 16384))
                    if not chunk:
                        break
                    left -= len(chunk)
            except OSError:
                pass

        def _read_body(self) -> bool:
            """Reads a body of at most MAX_BODY bytes with a valid Content-Length; otherwise
            answers 400, 411 or 413 itself (the body unread) and returns False."""
            if self.headers.get("Transfer-Encoding") is not None:
                self._text(411, "Send a Content-Length, not a chunked body.\n")
                return False
            values = [v.strip() for v in self.headers.get_all("Content-Length") or ()]
            if not values:
                return True
            text = values[0]
            if len(set(values)) != 1 or not _LENGTH.fullmatch(text):
                log.debug("refused a malformed Content-Length", extra={
                    "client": _client(self.client_address),
                    "content_length": clean(", ".join(values), limit=100)})
                self._text(400, "Malformed Content-Length: send one non-negative number.\n")
                return False
            length = int(text)
            if length > MAX_BODY:
                self._text(413, f"Request body too large: at most {MAX_BODY} bytes.\n")
                return False
            if (length and self.request_version != "HTTP/1.0"
                    and self.headers.get("Expect", "").lower() == "100-continue"):
                self.send_response_only(100)
                self.end_headers()
            if len(self.rfile.read(length)) < length:  # the client closed mid-body
                self.close_connection = True
                return False
            self._body_unread = False
            return True

        def do_GET(self) -> None:
            self._run(self._get)

        do_HEAD = do_GET

        def do_POST(self) -> None:
            self._run(self._post)

        def do_PUT(self) -> None:
            self._run(self._put)

        def _get(self) -> None:
            if not self._admitted():
                return
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                self._metrics()
            elif path == "/probe" and probe is not None:
                answer = probe.answer(query, self.headers.get(HEADER),
                                      self.headers.get("Accept", ""))
                self._send(answer.status, answer.body, answer.content_type)
            elif path == "/-/healthy":
                self._text(200, "Healthy.\n")
            elif path == "/-/ready":
                ok = ready()
                self._text(200 if ok else 503, "Ready.\n" if ok else "Not ready.\n")
            elif path == "/-/reload":
                self._text(405, "Use POST to reload the configuration.\n", Allow="POST")
            elif path == "/status.json":
                body = status_json(snapshot(), canaries() if canaries else None, query=query)
                self._compressible(body, "application/json")
            elif path in ("/", "/index.html"):
                page = render_status_page(snapshot(), canaries() if canaries else None,
                                          dns() if dns else None, query=query)
                self._compressible(page.encode("utf-8"), "text/html; charset=utf-8")
            else:
                self._text(404, "Not found. Try /metrics or /.\n")

        def _put(self) -> None:
            """Nothing accepts PUT; the body is never read."""
            if not self._admitted():
                return
            if self.path.split("?", 1)[0] == "/-/reload":
                self._text(405, "Use POST to reload the configuration.\n", Allow="POST")
            else:
                self._text(405, "Only POST /-/reload changes anything.\n", Allow="GET, HEAD")

        def _post(self) -> None:
            """Credentials first, then the path and the origin, and only then a small body."""
            if not self._admitted():
                return
            if self.path.split("?", 1)[0] != "/-/reload":
                self._text(405, "Only /-/reload accepts POST.\n", Allow="GET, HEAD")
                return
            if cross_site(self.headers.get("Host"), self.headers.get("Origin"),
                          self.headers.get("Sec-Fetch-Site")):
                log.debug("cross-site reload refused", extra={
                    "client": _client(self.client_address),
                    "origin": clean(self.headers.get("Origin") or "", limit=200)})
                self._text(403, "Cross-site request refused: reload from the exporter's own "
                                "page or without a browser (curl -X POST).\n")
                return
            if not self._read_body():
                return
            ok, message = reload()
            self._text(200 if ok else 500, message.rstrip("\n") + "\n")

        def _metrics(self) -> None:
            accept = self.headers.get("Accept", "")
            if exposition is not None:
                chunks, content_type = exposition(accept)
            else:
                encoder, content_type = choose_encoder(accept)
                chunks = [encoder(registry)]
            extra: dict[str, str] = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                chunks = gzip_chunks(chunks)
                extra["Content_Encoding"] = "gzip"
            self._send_chunks(200, chunks, content_type, **extra)

        def _compressible(self, body: bytes, content_type: str) -> None:
            """200 with ``body``, gzipped (fast) for a client that accepts it."""
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, gzip.compress(body, compresslevel=1), content_type,
                           Content_Encoding="gzip")
            else:
                self._send(200, body, content_type)

    return Handler
