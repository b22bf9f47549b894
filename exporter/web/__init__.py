"""The HTTP side: /metrics and the other endpoints, the guard (TLS, basic auth, rate limit),
the status page and its charts."""

from __future__ import annotations

from exporter.web.guard import WebGuard
from exporter.web.server import WebServer, parse_listen_address

__all__ = [
    "WebGuard",
    "WebServer",
    "parse_listen_address",
]
