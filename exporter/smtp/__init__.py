"""The SMTP protocol layer every feature sends through: the timed session, AUTH mechanisms,
OAuth2 tokens, TLS facts, kernel timestamps and resolving."""

from __future__ import annotations

from exporter.smtp.auth import authenticate
from exporter.smtp.oauth2 import (
    RefreshingTokenSource,
    StaticTokenSource,
    TokenError,
    TokenSource,
    token_source_for,
)
from exporter.smtp.session import ProbeError, SMTPSession
from exporter.smtp.tlsinfo import client_context

__all__ = [
    "ProbeError",
    "RefreshingTokenSource",
    "SMTPSession",
    "StaticTokenSource",
    "TokenError",
    "TokenSource",
    "authenticate",
    "client_context",
    "token_source_for",
]
