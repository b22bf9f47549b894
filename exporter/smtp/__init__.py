"""The SMTP protocol layer every feature sends through: one timed attempt (session, AUTH
mechanisms, OAuth2 tokens), TLS facts and diagnosis, kernel timestamps, resolving."""

from __future__ import annotations

from exporter.smtp.attempt import BACKSTOP, Attempt, attempt
from exporter.smtp.auth import authenticate, token_source_for
from exporter.smtp.errors import ProbeError
from exporter.smtp.oauth2 import (
    RefreshingTokenSource,
    StaticTokenSource,
    TokenError,
    TokenSource,
)
from exporter.smtp.resolve import resolver_answers
from exporter.smtp.session import SMTPSession
from exporter.smtp.tlsinfo import client_context

__all__ = [
    "BACKSTOP",
    "Attempt",
    "ProbeError",
    "RefreshingTokenSource",
    "SMTPSession",
    "StaticTokenSource",
    "TokenError",
    "TokenSource",
    "attempt",
    "authenticate",
    "client_context",
    "resolver_answers",
    "token_source_for",
]
