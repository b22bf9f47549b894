"""Authentication-Results (RFC 8601) parsing, and the SPF/DKIM/DMARC/ARC verdicts we trust."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from exporter.parsing.rfc8601 import NAME_STOPS, LexicalError, Scanner

__all__ = [
    "AuthResults",
    "MethodResult",
    "Verdicts",
    "judge",
    "parse_authentication_results",
]

_KEYWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
# Registered ptypes: "smtp.remote-ip=1.2.3.4" after a ";" is a stray property, not a method.
_PTYPES = frozenset({"smtp", "header", "body", "policy"})
_MAX_INSTANCE_DIGITS = 9

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
class MethodResult:
    """One resinfo: ``dkim=pass header.d=example.com``."""

    method: str
    result: str
    reason: str | None
    properties: dict[str, str]
    version: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResults:
    """A parsed header; ``error`` is set (and ``results`` empty) when it is malformed."""

    authserv_id: str
    version: str | None
    results: tuple[MethodResult, ...]
    instance: int | None = None
    error: str | None = None


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


@dataclass(slots=True)
class _Parse:
    """What has been read so far, kept so an error can still report the authserv-id."""

    authserv_id: str = ""
    version: str | None = None
    instance: int | None = None
    results: list[MethodResult] = field(default_factory=list)


def parse_authentication_results(value: str) -> AuthResults:
    """Parse a header value (or a whole ``Authentication-Results: ...`` line); never raises."""
    state = _Parse()
    try:
        _parse(Scanner(value, _value_start(value)), state)
    except LexicalError as exc:
        return AuthResults(state.authserv_id, state.version, (), state.instance, str(exc))
    return AuthResults(state.authserv_id, state.version, tuple(state.results), state.instance)


def _value_start(text: str) -> int:
    """Where the value begins: after "[ARC-|X-MS-Exchange-]Authentication-Results:" if present."""
    colon = text.find(":")
    if colon < 0:
        return 0
    name = text[:colon].strip()
    is_field_name = name != "" and all("!" <= char <= "~" for char in name)
    if is_field_name and name.lower().endswith("authentication-results"):
        return colon + 1
    return 0


def _parse(scanner: Scanner, state: _Parse) -> None:
    scanner.skip_cfws()
    if scanner.at_end():
        raise LexicalError("empty header value", scanner.pos)
    state.instance = _arc_instance(scanner)
    if not _starts_with_resinfo(scanner):  # Microsoft writes no authserv-id at all
        _authserv_id(scanner, state)
    while True:
        scanner.skip_cfws()
        if scanner.at_end():
            return
        if scanner.take(";"):
            continue
        result = _resinfo(scanner)
        if result is not None:
            state.results.append(result)


def _arc_instance(scanner: Scanner) -> int | None:
    """Consume ARC's ``i=N;`` prefix when present."""
    mark = scanner.pos
    if scanner.word(NAME_STOPS).lower() == "i":
        scanner.skip_cfws()
        if scanner.take("="):
            scanner.skip_cfws()
            number = scanner.word()
            scanner.skip_cfws()
            if _is_digits(number) and scanner.take(";"):
                if len(number) > _MAX_INSTANCE_DIGITS:
                    raise LexicalError("ARC instance out of range", mark)
                scanner.skip_cfws()
                return int(number)
    scanner.pos = mark
    return None


def _starts_with_resinfo(scanner: Scanner) -> bool:
    mark = scanner.pos
    name = scanner.name()
    scanner.skip_cfws()
    found = name != "" and scanner.peek() in ("=", "/")
    scanner.pos = mark
    return found


def _authserv_id(scanner: Scanner, state: _Parse) -> None:
    start = scanner.pos
    state.authserv_id = scanner.quoted() if scanner.peek() == '"' else scanner.word()
    if not state.authserv_id:
        raise LexicalError("expected an authserv-id", start)
    scanner.skip_cfws()
    if scanner.peek().isdigit():
        start = scanner.pos
        version = scanner.word()
        if not _is_digits(version):
            raise LexicalError(f"bad authres-version {version[:20]!r}", start)
        state.version = version
        scanner.skip_cfws()
    if not scanner.at_end() and scanner.peek() != ";":
        raise LexicalError(f"expected ';' after the authserv-id, found {scanner.peek()!r}",
                           scanner.pos)


def _resinfo(scanner: Scanner) -> MethodResult | None:
    """One ``method[/version]=result props...``; None for bare tokens such as "none"."""
    if scanner.peek() == ")":
        raise LexicalError("unbalanced ')'", scanner.pos)
    method = scanner.name()
    scanner.skip_cfws()
    version = None
    if method and scanner.take("/"):
        scanner.skip_cfws()
        version = scanner.word(NAME_STOPS) or None
        scanner.skip_cfws()
    if not method or not scanner.take("="):
        scanner.skip_to_semicolon()
        return None
    scanner.skip_cfws()
    result = scanner.word()
    if not _is_method(method) or not _is_keyword(result):
        scanner.skip_to_semicolon()
        return None
    properties = _properties(scanner)
    return MethodResult(
        method=method.lower(),
        result=result.lower(),
        reason=next((v for k, v in properties.items() if k.lower() == "reason"), None),
        properties=properties,
        version=version,
    )


def _properties(scanner: Scanner) -> dict[str, str]:
    """``reason=...`` and ``ptype.property=value`` pairs up to the next ";"; comments dropped."""
    properties: dict[str, str] = {}
    while True:
        scanner.skip_cfws()
        char = scanner.peek()
        if char in ("", ";"):
            return properties
        if char == ")":
            raise LexicalError("unbalanced ')'", scanner.pos)
        if char == '"':  # a stray quoted string: skip it
            scanner.quoted()
            continue
        if char in ("=", ".", "/"):  # stray punctuation: skip it
            scanner.pos += 1
            continue
        key = scanner.name()
        scanner.skip_cfws()
        if not scanner.take("="):  # a bare word: not a property
            continue
        scanner.skip_cfws()
        properties.setdefault(_property_key(key), scanner.value())


def _property_key(key: str) -> str:
    ptype, dot, rest = key.partition(".")
    return f"{ptype.lower()}.{rest}" if dot else key


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_keyword(text: str) -> bool:
    return text != "" and all(char in _KEYWORD_CHARS for char in text)


def _is_method(text: str) -> bool:
    parts = text.split(".")
    return all(_is_keyword(part) for part in parts) and (
        len(parts) == 1 or parts[0].lower() not in _PTYPES
    )


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
