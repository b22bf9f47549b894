"""Pure parsers of received mail headers: the RFC 8601 scanner, Authentication-Results and
spam scores."""

from __future__ import annotations

from exporter.headers.authresults import AuthResults, MethodResult, parse_authentication_results
from exporter.headers.spam import spam_scores

__all__ = [
    "AuthResults",
    "MethodResult",
    "parse_authentication_results",
    "spam_scores",
]
