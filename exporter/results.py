"""Probe outcomes as values: phases, failure reasons with hints, and relay results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "HINTS",
    "Arrival",
    "CanarySent",
    "CheckStatus",
    "DNSCheck",
    "DomainReport",
    "Phase",
    "Reason",
    "RelayDNSReport",
    "RelayResult",
    "TLSInfo",
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


@dataclass(frozen=True, slots=True)
class RelayResult:
    """The outcome of one relay probe."""

    relay: str
    success: bool
    started_at: float
    duration: float
    phases: dict[Phase, float] = field(default_factory=dict)
    reason: Reason | None = None
    hint: str | None = None
    detail: str | None = None
    reply: str | None = None
    failed_phase: Phase | None = None
    expected: Reason | None = None
    observed: Reason | None = None
    tls: TLSInfo | None = None
    auth_mechanisms: tuple[str, ...] = ()
    transcript: tuple[TranscriptLine, ...] = ()


@dataclass(frozen=True, slots=True)
class CanarySent:
    """The outcome of sending one canary through a relay."""

    relay: str
    token: str
    success: bool
    started_at: float
    sent_at: float | None  # wall clock when the relay accepted the message
    uncertain: bool = False  # the connection failed after the message was handed over
    accepted: tuple[str, ...] = ()  # recipients the relay accepted
    phases: dict[Phase, float] = field(default_factory=dict)
    reason: Reason | None = None
    hint: str | None = None
    detail: str | None = None
    reply: str | None = None
    failed_phase: Phase | None = None
    transcript: tuple[TranscriptLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Arrival:
    """A canary seen in a mailbox, with what the receiver said about it."""

    token: str
    mailbox: str
    folder: str  # "inbox", "spam" or the configured label of another folder
    folder_name: str  # the IMAP name, e.g. "[Gmail]/Spam"
    seen_at: float  # wall clock when the watcher found it
    internal_date: float | None  # when the receiving server stored it (INTERNALDATE)
    headers: tuple[tuple[str, str], ...]  # (name, value) of every header, in order


class CheckStatus(StrEnum):
    """The three-way outcome of a DNS check."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DNSCheck:
    """One DNS check of a domain or relay host: its status and a one-line explanation with
    the fix (``check`` is mx, spf, dkim, dmarc, mta_sts, tls_rpt, address, ptr or dnsbl)."""

    subject: str  # the domain, or the relay name for relay checks
    check: str
    status: CheckStatus
    message: str
    selector: str | None = None  # dkim: the selector; ptr/dnsbl: the address
    zone: str | None = None  # dnsbl: the blocklist zone
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class DomainReport:
    """Every check of one sending domain, with the figures metrics need."""

    domain: str
    checked_at: float
    checks: tuple[DNSCheck, ...]
    spf_lookups: int | None = None
    dkim_key_bits: dict[str, int] = field(default_factory=dict)  # selector -> bits
    dmarc_policy: str | None = None
    dmarc_subdomain_policy: str | None = None
    dmarc_pct: int | None = None


@dataclass(frozen=True, slots=True)
class RelayDNSReport:
    """A relay host's addresses, reverse DNS and blocklist listings."""

    relay: str
    host: str
    checked_at: float
    checks: tuple[DNSCheck, ...]
    addresses: tuple[str, ...] = ()
    ptr_matches: dict[str, bool] = field(default_factory=dict)  # address -> FCrDNS holds
    listed: dict[tuple[str, str], bool] = field(default_factory=dict)  # (address, zone) -> listed
