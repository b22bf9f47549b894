"""Authentication-Results (RFC 8601) parsing: a header into its authserv-id and method results."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.headers.rfc8601 import NAME_STOPS, LexicalError, Scanner

__all__ = [
    "AuthResults",
    "MethodResult",
    "parse_authentication_results",
]

_KEYWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
# Registered ptypes: "smtp.remote-ip=1.2.3.4" after a ";" is a stray property, not a method.
_PTYPES = frozenset({"smtp", "header", "body", "policy"})
_MAX_INSTANCE_DIGITS = 9

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
