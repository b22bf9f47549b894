"""DNS check outcomes as values: the check names and statuses, one check, a sending domain's
report, a relay host's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CheckName",
    "CheckStatus",
    "DNSCheck",
    "DomainReport",
    "RelayDNSReport",
]


class CheckName(StrEnum):
    """Which DNS check a result is of; the value is the ``check`` label on /metrics."""

    # of a sending domain
    MX = "mx"
    SPF = "spf"
    DKIM = "dkim"
    DMARC = "dmarc"
    MTA_STS = "mta_sts"
    TLS_RPT = "tls_rpt"
    # of a relay host
    ADDRESS = "address"
    PTR = "ptr"
    DNSBL = "dnsbl"


class CheckStatus(StrEnum):
    """The three-way outcome of a DNS check."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DNSCheck:
    """One DNS check of a domain or relay host: its status and a one-line explanation with
    the fix."""

    subject: str  # the domain, or the relay name for relay checks
    check: CheckName
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
