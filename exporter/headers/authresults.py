"""Authentication-Results (RFC 8601) parsing: a header into its authserv-id and method results."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.headers.rfc8601 import NAME_STOPS, LexicalError, Scanner, field_body_defect

__all__ = [
    "AuthResults",
    "MethodResult",
    "parse_authentication_results",
]

_KEYWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
# Registered ptypes: "smtp.remote-ip=1.2.3.4" after a ";" is a stray property, not a method.
_PTYPES = frozenset({"smtp", "header", "body", "policy"})
_MAX_INSTANCE_DIGITS = 9
_FIELD_NAMES = frozenset({
    "authentication-results", "arc-authentication-results",
    "x-ms-exchange-authentication-results",
})
# RFC 2045 tspecials a bare authserv-id may not hold (the scanner's word already stops at the
# others): "example/net" is no authserv-id, and no method either.
_TSPECIALS = frozenset('<>@,:\\/[]?')

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


@dataclass(slots=True)
class _Parse:
    """What has been read so far, kept so an error can still report the authserv-id."""

    authserv_id: str = ""
    version: str | None = None
    instance: int | None = None
    results: list[MethodResult] = field(default_factory=list)
    # No authserv-id: Microsoft's form, where bare receiving-domain tokens sit between results.
    microsoft: bool = False
    # The "none" no-result was read: nothing but ";" and CFWS may follow.
    no_result: bool = False


def parse_authentication_results(value: str) -> AuthResults:
    """Parse one header value (or one whole ``Authentication-Results: ...`` field); never raises.

    Anything but one well-formed field body is an error with no results: a syntax error, a
    result after "none", a control character or Unicode space, a second header field.
    """
    state = _Parse()
    start = _value_start(value)
    defect = field_body_defect(value, start)
    scanner = Scanner(value, start)
    if defect is not None:
        scanner.end = defect.offset  # still read the authserv-id in front of the defect
    try:
        _parse(scanner, state)
    except LexicalError as exc:
        defect = defect or exc
    if defect is not None:
        return AuthResults(state.authserv_id, state.version, (), state.instance, str(defect))
    return AuthResults(state.authserv_id, state.version, tuple(state.results), state.instance)


def _value_start(text: str) -> int:
    """Where the value begins: after "[ARC-|X-MS-Exchange-]Authentication-Results:" if present.

    Only these names: "X-Original-Authentication-Results:" (an earlier hop's copy) or any other
    field left in front of the value makes a bad authserv-id, not a header to trust.
    """
    colon = text.find(":")
    if colon < 0:
        return 0
    return colon + 1 if text[:colon].strip().lower() in _FIELD_NAMES else 0


def _parse(scanner: Scanner, state: _Parse) -> None:
    scanner.skip_cfws()
    if scanner.at_end():
        raise LexicalError("empty header value", scanner.pos)
    state.instance = _arc_instance(scanner)
    state.microsoft = _starts_with_resinfo(scanner)
    if not state.microsoft:
        _authserv_id(scanner, state)
    while True:
        scanner.skip_cfws()
        if scanner.at_end():
            return
        if scanner.take(";"):
            continue
        if state.no_result:
            raise LexicalError("nothing may follow 'none'", scanner.pos)
        result = _resinfo(scanner, state)
        if result is not None:
            state.results.append(result)
        scanner.skip_cfws()
        if state.no_result and not scanner.at_end() and scanner.peek() != ";":
            raise LexicalError("nothing may follow 'none'", scanner.pos)
        if not scanner.at_end() and scanner.peek() != ";":
            raise LexicalError(f"expected ';', found {scanner.peek()!r}", scanner.pos)


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
    """True when the value opens with ``method[/digits] =``: Microsoft's form, no authserv-id."""
    mark = scanner.pos
    name = scanner.name()
    scanner.skip_cfws()
    found = name != ""
    if found and scanner.take("/"):
        scanner.skip_cfws()
        found = _is_digits(scanner.word(NAME_STOPS))
        scanner.skip_cfws()
    found = found and scanner.peek() == "="
    scanner.pos = mark
    return found


def _authserv_id(scanner: Scanner, state: _Parse) -> None:
    start = scanner.pos
    quoted = scanner.peek() == '"'
    authserv_id = scanner.quoted() if quoted else scanner.word()
    if not authserv_id:
        raise LexicalError("expected an authserv-id", start)
    if not quoted and not _TSPECIALS.isdisjoint(authserv_id):
        raise LexicalError(f"bad authserv-id {authserv_id[:40]!r}", start)
    if not quoted and authserv_id.lower() == "none":  # "none; ..." is a no-result, not an id
        raise LexicalError("'none' where the authserv-id belongs", start)
    state.authserv_id = authserv_id
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


def _resinfo(scanner: Scanner, state: _Parse) -> MethodResult | None:
    """One ``method[/version]=result props...``; None for the tokens that carry no result: the
    "none" no-result, Microsoft's receiving domain, Exim's stray ``smtp.remote-ip=...``."""
    start = scanner.pos
    if scanner.peek() == ")":
        raise LexicalError("unbalanced ')'", start)
    method = scanner.name()
    if not method:
        raise LexicalError(f"expected a method, found {scanner.peek()!r}", start)
    scanner.skip_cfws()
    version = None
    if scanner.take("/"):
        scanner.skip_cfws()
        version_at = scanner.pos
        version = scanner.word(NAME_STOPS)
        if not _is_digits(version):
            raise LexicalError(f"bad method version {version[:20]!r}", version_at)
        scanner.skip_cfws()
    if not scanner.take("="):
        if version is None:
            _bare_token(method, start, state)
            return None
        raise LexicalError(f"expected '=' after {method[:40]!r}", scanner.pos)
    scanner.skip_cfws()
    if version is None and _is_stray_property(method):
        scanner.value()
        _properties(scanner)
        return None
    result_at = scanner.pos
    result = scanner.word()
    if not _is_method(method):
        raise LexicalError(f"bad method {method[:40]!r}", start)
    if not result:
        raise LexicalError(f"expected a result after {method[:40] + '='!r}", result_at)
    if not _is_keyword(result):
        raise LexicalError(f"bad result {result[:20]!r}", result_at)
    properties = _properties(scanner)
    return MethodResult(
        method=method.lower(),
        result=result.lower(),
        reason=properties.get("reason"),
        properties=properties,
        version=version,
    )


def _bare_token(token: str, start: int, state: _Parse) -> None:
    """Accept a resinfo that is one word: "none" alone, or Microsoft's receiving domain."""
    if token.lower() == "none" and not state.microsoft:
        if state.results:
            raise LexicalError("'none' must be the only result", start)
        state.no_result = True
    elif not (state.microsoft and "." in token and _is_property(token)):
        raise LexicalError(f"expected '=' after {token[:40]!r}", start)


def _properties(scanner: Scanner) -> dict[str, str]:
    """``reason=...`` and ``ptype.property=value`` pairs up to the next ";"; comments dropped.

    Names are lower-cased (ptype and property are case-insensitive), values kept as written.
    """
    properties: dict[str, str] = {}
    while True:
        scanner.skip_cfws()
        char = scanner.peek()
        if char in ("", ";"):
            return properties
        if char == ")":
            raise LexicalError("unbalanced ')'", scanner.pos)
        start = scanner.pos
        key = scanner.name()
        if not _is_property(key):
            shown = key[:40] if key else char
            raise LexicalError(f"expected a property, found {shown!r}", start)
        scanner.skip_cfws()
        if not scanner.take("="):
            raise LexicalError(f"expected '=' after {key[:40]!r}", scanner.pos)
        scanner.skip_cfws()
        properties.setdefault(key.lower(), scanner.value())


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_keyword(text: str) -> bool:
    return text != "" and all(char in _KEYWORD_CHARS for char in text)


def _is_property(text: str) -> bool:
    """``ptype.property``, or a bare name (``reason``, ``action``, ``x-...``)."""
    return all(_is_keyword(part) for part in text.split("."))


def _is_stray_property(text: str) -> bool:
    """``smtp.remote-ip``: a registered ptype's property where a method belongs."""
    parts = text.split(".")
    return len(parts) > 1 and parts[0].lower() in _PTYPES and _is_property(text)


def _is_method(text: str) -> bool:
    parts = text.split(".")
    return all(_is_keyword(part) for part in parts) and (
        len(parts) == 1 or parts[0].lower() not in _PTYPES
    )
