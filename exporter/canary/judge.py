"""The SPF, DKIM, DMARC and ARC verdicts on a canary, from the Authentication-Results headers
of the receivers we trust."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from exporter.headers import AuthResults, MethodResult, parse_authentication_results

__all__ = ["Verdicts", "judge"]

# Result values registered for each judged method (RFC 8601 2.7, RFC 7489 11.2, RFC 8617 4.4);
# others ("bestguesspass", "unknown", rspamd's arc "reject") are ignored, never read as pass.
_KNOWN_RESULTS: dict[str, frozenset[str]] = {
    "spf": frozenset(
        {"none", "pass", "fail", "softfail", "neutral", "policy", "temperror", "permerror"}
    ),
    "dkim": frozenset({"none", "pass", "fail", "neutral", "policy", "temperror", "permerror"}),
    "dmarc": frozenset({"none", "pass", "fail", "temperror", "permerror"}),
    "arc": frozenset({"none", "pass", "fail"}),
}
_ALIASES = {"hardfail": "fail"}  # RFC 5451 spelling, corrected by erratum
_MAILFROM_KEYS = ("smtp.mailfrom", "smtp.mail")  # smtp.mail: pre-RFC 7001 spelling


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What the trusted receiver concluded about one message."""

    spf: str
    dkim: str
    dmarc: str
    arc: str
    dkim_domains: tuple[tuple[str, str], ...]
    spf_domain: str | None
    dmarc_aligned: bool
    trusted_header: str | None


def judge(
    headers: Sequence[str], *, trusted_authserv_ids: Collection[str], from_domain: str
) -> Verdicts:
    """Verdicts from the headers whose authserv-id we trust (top first); the rest say "none".

    Each method is decided by the first trusted header that reports it with a registered
    result. An empty ``trusted_authserv_ids`` trusts nothing; list "" explicitly to trust
    Microsoft's headers, which carry no authserv-id.
    """
    if isinstance(headers, str):
        headers = (headers,)
    trusted = {authserv_id.lower() for authserv_id in trusted_authserv_ids}
    decided: dict[str, list[MethodResult]] = {}
    trusted_header: str | None = None
    for raw in headers:
        parsed = parse_authentication_results(raw)
        if parsed.authserv_id.lower() not in trusted:
            continue
        if trusted_header is None:
            trusted_header = raw
        for method, results in _known_results(parsed).items():
            decided.setdefault(method, results)

    dkim = decided.get("dkim", [])
    spf = _first(decided.get("spf", []))
    spf_domain = _spf_domain(spf)
    sender = _domain_of(from_domain)
    aligned = any(
        r.result == "pass" and _aligned(_dkim_domain(r), sender) for r in dkim
    ) or (spf is not None and spf.result == "pass" and _aligned(spf_domain or "", sender))
    return Verdicts(
        spf=spf.result if spf is not None else "none",
        dkim="pass" if any(r.result == "pass" for r in dkim) else _verdict(dkim),
        dmarc=_verdict(decided.get("dmarc", [])),
        arc=_verdict(decided.get("arc", [])),
        dkim_domains=_dkim_domains(dkim),
        spf_domain=spf_domain,
        dmarc_aligned=aligned,
        trusted_header=trusted_header,
    )


def _known_results(parsed: AuthResults) -> dict[str, list[MethodResult]]:
    """Judged methods' results with registered values only, aliases folded in, in order."""
    known: dict[str, list[MethodResult]] = {}
    for result in parsed.results:
        value = _ALIASES.get(result.result, result.result)
        if value in _KNOWN_RESULTS.get(result.method, ()):
            known.setdefault(result.method, []).append(replace(result, result=value))
    return known


def _first(results: list[MethodResult]) -> MethodResult | None:
    return results[0] if results else None


def _verdict(results: list[MethodResult]) -> str:
    return results[0].result if results else "none"


def _dkim_domains(dkim: list[MethodResult]) -> tuple[tuple[str, str], ...]:
    """(domain, selector) of each signature that was checked, passing ones first."""
    pairs = []
    for result in sorted(dkim, key=lambda r: r.result != "pass"):
        domain = _dkim_domain(result)
        if domain and result.result != "none":
            pairs.append((domain, result.properties.get("header.s", "")))
    return tuple(pairs)


def _spf_domain(spf: MethodResult | None) -> str | None:
    if spf is None:
        return None
    for key in (*_MAILFROM_KEYS, "smtp.helo"):
        domain = _domain_of(spf.properties.get(key, ""))
        if domain:
            return domain
    return None


def _dkim_domain(result: MethodResult) -> str:
    """The signing domain: header.d, else the domain of header.i (Gmail writes only that)."""
    return _domain_of(result.properties.get("header.d") or result.properties.get("header.i", ""))


def _domain_of(text: str) -> str:
    """The lower-case domain of an address or domain: "<a@B.example.>" -> "b.example"."""
    return text.strip().strip("<>").rpartition("@")[2].rstrip(".").lower()


def _aligned(domain: str, sender: str) -> bool:
    """Relaxed alignment, approximated: one is the other or a subdomain of it (never a TLD)."""
    if not domain or not sender:
        return False
    if domain == sender:
        return True
    shorter, longer = sorted((domain, sender), key=len)
    return "." in shorter and longer.endswith("." + shorter)
