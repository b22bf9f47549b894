"""The HTTP side: /metrics, /probe and the other endpoints, the guard (TLS, basic auth, rate
limit), the status page and its charts."""

from __future__ import annotations

from exporter.web.guard import WebGuard
from exporter.web.probe import ProbeEndpoint, ProbeRequests
from exporter.web.server import WebServer, parse_listen_address

__all__ = [
    "ProbeEndpoint",
    "ProbeRequests",
    "WebGuard",
    "WebServer",
    "parse_listen_address",
]
