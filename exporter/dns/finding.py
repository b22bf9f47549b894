"""What one DNS check found: a status, a one-line message with the fix, and its figures."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.dns.result import CheckStatus

__all__ = ["Finding", "count_words"]

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True, slots=True)
class Finding:
    """A check's verdict before it becomes a DNSCheck, with the figures reports carry."""

    status: CheckStatus
    message: str
    spf_lookups: int | None = None
    dkim_bits: int | None = None
    dmarc_policy: str | None = None
    dmarc_subdomain_policy: str | None = None
    dmarc_pct: int | None = None
    fcrdns: bool | None = None  # ptr: the PTR name resolves back; None when lookups failed
    listed: bool | None = None  # dnsbl: listed; None when the lookup failed


def count_words(n: int) -> str:
    """Small counts as words ("two"), larger ones as digits."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)
