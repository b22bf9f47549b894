"""Pure parsers of received mail headers: the RFC 8601 scanner, Authentication-Results, spam
scores and Received."""

from __future__ import annotations

from exporter.headers.authresults import AuthResults, MethodResult, parse_authentication_results
from exporter.headers.received import Hop, parse_received
from exporter.headers.spam import spam_scores

__all__ = [
    "AuthResults",
    "Hop",
    "MethodResult",
    "parse_authentication_results",
    "parse_received",
    "spam_scores",
]
