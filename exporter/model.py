"""Shared vocabulary of every feature: SMTP phases, failure reasons with their hints, TLS modes
and facts, transcript lines."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "HINTS",
    "Phase",
    "Reason",
    "TLSInfo",
    "TLSMode",
    "TranscriptLine",
]


class Phase(StrEnum):
    """A timed step of an SMTP session, in the order it happens."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    TLS = "tls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    QUIT = "quit"


class Reason(StrEnum):
    """Why a probe failed: exactly one per failed probe; dashboards and alerts key on these."""

    DNS_ERROR = "dns_error"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    GREETING_TIMEOUT = "greeting_timeout"
    TLS_MODE_MISMATCH = "tls_mode_mismatch"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    TLS_VERSION_TOO_OLD = "tls_version_too_old"
    TLS_CERT_INVALID = "tls_cert_invalid"
    STARTTLS_UNSUPPORTED = "starttls_unsupported"
    AUTH_UNSUPPORTED = "auth_unsupported"
    AUTH_FAILED = "auth_failed"
    REJECTED_TEMPORARY = "rejected_temporary"
    REJECTED_PERMANENT = "rejected_permanent"
    PROTOCOL_ERROR = "protocol_error"
    TIMEOUT = "timeout"
    EXPECTATION_FAILED = "expectation_failed"


HINTS: dict[Reason, str] = {
    Reason.DNS_ERROR: "the relay host name does not resolve: check host and the DNS resolver",
    Reason.CONNECT_REFUSED: "nothing listens on that host and port: check host, port and the relay",
    Reason.CONNECT_TIMEOUT: (
        "no answer to the TCP connect: a firewall drops the port (outbound 25 is blocked "
        "by most clouds; try 587 or 2525)"
    ),
    Reason.GREETING_TIMEOUT: "connected, but the server never sent its 220 greeting",
    Reason.TLS_MODE_MISMATCH: "the port speaks another TLS mode than configured",
    Reason.TLS_HANDSHAKE_FAILED: (
        "the TLS handshake failed: check the server's TLS setup (protocols, ciphers, "
        "certificate)"
    ),
    Reason.TLS_VERSION_TOO_OLD: (
        "the server offers only TLS older than tls_min_version: upgrade its TLS; "
        "lower tls_min_version for this relay only if you accept the risk"
    ),
    Reason.TLS_CERT_INVALID: (
        "the server certificate did not verify: fix it, set ca_file for a private CA, "
        "or tls_verify: false"
    ),
    Reason.STARTTLS_UNSUPPORTED: "the server does not offer STARTTLS on this port",
    Reason.AUTH_UNSUPPORTED: "the server does not offer the configured AUTH mechanism",
    Reason.AUTH_FAILED: (
        "credentials refused: check username and password (app password or API key, "
        "no trailing space)"
    ),
    Reason.REJECTED_TEMPORARY: "the server answered 4xx (temporary): rate limit or overload; retry",
    Reason.REJECTED_PERMANENT: "the server answered 5xx (permanent): read its reply text",
    Reason.PROTOCOL_ERROR: "the server broke the SMTP protocol or closed the connection",
    Reason.TIMEOUT: "the server stopped answering within the probe timeout",
    Reason.EXPECTATION_FAILED: "a negative check did not see the failure it expects",
}


class TLSMode(StrEnum):
    """How a connection gets encrypted: upgrade after EHLO, TLS from the first byte, or never."""

    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the TLS handshake established."""

    version: str
    cipher: str
    verified: bool
    not_after: float | None = None
    not_before: float | None = None
    issuer: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line of an SMTP conversation; ``C`` client, ``S`` server, ``*`` a note."""

    offset: float
    direction: str
    text: str
