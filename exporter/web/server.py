"""HTTP endpoints: /metrics, /-/healthy, /-/ready, /-/reload, /status.json and the status page."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from exporter.canary import CanarySnapshot
from exporter.dns import DNSSnapshot
from exporter.relay import Snapshot, result_to_dict
from exporter.web.guard import WebGuard
from exporter.web.statuspage import render_status_page

__all__ = ["WebServer", "parse_listen_address"]

log = logging.getLogger(__name__)


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
    ) -> None:
        host, port = address
        self.guard = guard or WebGuard(None)
        handler = _make_handler(registry, snapshot, reload, ready, canaries, dns, self.guard)
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
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "smtp-canary-exporter"
        protocol_version = "HTTP/1.1"
        timeout = 60  # an idle or trickling client frees its thread after this

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
            log.debug("http %s", format % args)

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            for key, value in guard.headers():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _text(self, status: int, text: str, **headers: str) -> None:
            self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8", **headers)

        def do_GET(self) -> None:
            if not self._admitted():
                return
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._metrics()
            elif path == "/-/healthy":
                self._text(200, "Healthy.\n")
            elif path == "/-/ready":
                ok = ready()
                self._text(200 if ok else 503, "Ready.\n" if ok else "Not ready.\n")
            elif path == "/-/reload":
                self._text(405, "Use POST to reload the configuration.\n", Allow="POST")
            elif path == "/status.json":
                snap = snapshot()
                body = [
                    result_to_dict(v.last) if v.last else {"relay": name, "success": None}
                    for name, v in sorted(snap.relays.items())
                ]
                self._send(200, json.dumps(body, indent=2).encode(), "application/json")
            elif path in ("/", "/index.html"):
                page = render_status_page(snapshot(), canaries() if canaries else None,
                                          dns() if dns else None)
                self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
            else:
                self._text(404, "Not found. Try /metrics or /.\n")

        do_HEAD = do_GET

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            if not self._admitted():
                return
            if self.path.split("?", 1)[0] != "/-/reload":
                self._text(405, "Only /-/reload accepts POST.\n")
                return
            ok, message = reload()
            self._text(200 if ok else 500, message.rstrip("\n") + "\n")

        do_PUT = do_POST

        def _metrics(self) -> None:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(registry)
            extra: dict[str, str] = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=5)
                extra["Content_Encoding"] = "gzip"
            self._send(200, body, content_type, **extra)

    return Handler
