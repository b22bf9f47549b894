"""Messages as the demo IMAP server's SEARCH and FETCH see them: keys, headers, FETCH items."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeAlias

from exporter.demo.imap_parse import ParseError, Token, parse_sequence_set

__all__ = [
    "Candidate", "FetchItem", "Matcher", "fetch_response", "header_fields", "imap_datetime",
    "parse_date", "parse_fetch_items", "parse_search", "section_bytes",
]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FLAG_KEYS = {  # search key -> (flag, whether the message must have it)
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
    "RECENT": ("\\Recent", True), "OLD": ("\\Recent", False),
}
_BODY = re.compile(r"BODY(\.PEEK)?\[([^\]]*)\]", re.IGNORECASE)
_FIELDS = re.compile(r"(HEADER\.FIELDS(?:\.NOT)?) \(([^()]*)\)", re.IGNORECASE)


def parse_date(text: str) -> date:
    """An IMAP ``date`` such as ``1-Feb-1994``."""
    match = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", text)
    if match is None or match[2].title() not in MONTHS:
        raise ParseError(f"invalid date {text!r}; expected e.g. 1-Feb-1994")
    try:
        return date(int(match[3]), MONTHS.index(match[2].title()) + 1, int(match[1]))
    except ValueError:
        raise ParseError(f"invalid date {text!r}") from None


def imap_datetime(when: datetime) -> str:
    """An INTERNALDATE such as `` 7-Feb-1994 21:52:25 +0000`` (without the quotes)."""
    delta = when.utcoffset()
    offset = int(delta.total_seconds()) // 60 if delta is not None else 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return (f"{when.day:2d}-{MONTHS[when.month - 1]}-{when.year:04d} "
            f"{when:%H:%M:%S} {sign}{hours:02d}{minutes:02d}")


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """The header (with its blank line) and the text of a CRLF message."""
    end = raw.find(b"\r\n\r\n")
    return (raw, b"") if end < 0 else (raw[: end + 4], raw[end + 4:])


def _header_blocks(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """Each header field as (lower-case name, its lines with CRLF), continuations included."""
    header = _split(raw)[0]
    name, lines = "", b""
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and name:
            lines += line
            continue
        if name:
            yield name, lines
        field, colon, _ = line.partition(b":")
        name = field.strip().decode("ascii", "replace").lower() if colon else ""
        lines = line if colon else b""
    if name:
        yield name, lines


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of each header field of a message."""
    return [(name, " ".join(block.partition(b":")[2].decode("utf-8", "replace").split()))
            for name, block in _header_blocks(raw)]


@dataclass(frozen=True)
class Candidate:
    """A message as SEARCH sees it; ``flags`` include ``\\Recent`` for this session."""

    seq: int
    uid: int
    flags: frozenset[str]
    internaldate: datetime
    raw: bytes


Matcher: TypeAlias = Callable[[Candidate], bool]


def parse_search(tokens: Sequence[Token], *, last_seq: int, last_uid: int) -> Matcher:
    """A predicate for SEARCH keys (ANDed): ALL, flags, HEADER, SUBJECT, SINCE, UID, NOT, OR..."""
    rest = iter(tokens)
    keys = [_search_key(token, rest, last_seq, last_uid) for token in rest]
    if not keys:
        raise ParseError("SEARCH needs at least one search key")
    return lambda m: all(key(m) for key in keys)


def _search_key(token: Token, rest: Iterator[Token], last_seq: int, last_uid: int) -> Matcher:
    if isinstance(token, list):
        return parse_search(token, last_seq=last_seq, last_uid=last_uid)
    key = token.upper()

    def arg() -> str:
        value = next(rest, None)
        if not isinstance(value, str):
            raise ParseError(f"search key {key} needs an argument")
        return value

    def sub() -> Matcher:
        value = next(rest, None)
        if value is None:
            raise ParseError(f"search key {key} needs a search key after it")
        return _search_key(value, rest, last_seq, last_uid)

    if key == "ALL":
        return lambda m: True
    if key in _FLAG_KEYS:
        flag, wanted = _FLAG_KEYS[key]
        return lambda m: (flag in m.flags) == wanted
    if key == "NEW":
        return lambda m: "\\Recent" in m.flags and "\\Seen" not in m.flags
    if key in ("KEYWORD", "UNKEYWORD"):
        keyword, wanted = arg(), key == "KEYWORD"
        return lambda m: (keyword in m.flags) == wanted
    if key in ("HEADER", "SUBJECT", "FROM", "TO", "CC", "BCC"):
        name = arg().lower() if key == "HEADER" else key.lower()
        needle = arg().lower()
        return lambda m: any(n == name and needle in v.lower() for n, v in header_fields(m.raw))
    if key in ("SINCE", "BEFORE", "ON"):
        day = parse_date(arg())
        compare: dict[str, Callable[[date], bool]] = {
            "SINCE": lambda d: d >= day, "BEFORE": lambda d: d < day, "ON": lambda d: d == day}
        test = compare[key]
        return lambda m: test(m.internaldate.date())
    if key == "UID":
        uids = parse_sequence_set(arg(), last_uid)
        return lambda m: m.uid in uids
    if key == "NOT":
        inner = sub()
        return lambda m: not inner(m)
    if key == "OR":
        left, right = sub(), sub()
        return lambda m: left(m) or right(m)
    if key[:1].isdigit() or key[:1] == "*":
        seqs = parse_sequence_set(key, last_seq)
        return lambda m: m.seq in seqs
    raise ParseError(f"unsupported search key {token!r}")


@dataclass(frozen=True)
class FetchItem:
    """One FETCH data item; ``key`` is its name in the response, e.g. ``BODY[HEADER]``."""

    name: str  # UID, FLAGS, INTERNALDATE, RFC822.SIZE or BODY
    key: str = ""
    section: str = ""  # "", HEADER, TEXT, HEADER.FIELDS or HEADER.FIELDS.NOT
    fields: tuple[str, ...] = ()
    sets_seen: bool = False


def parse_fetch_items(token: Token) -> list[FetchItem]:
    """The items of a FETCH: one atom or a parenthesized list (FAST is the only macro)."""
    items: list[FetchItem] = []
    for atom in token if isinstance(token, list) else [token]:
        if not isinstance(atom, str):
            raise ParseError("nested lists are not FETCH items")
        upper = atom.upper()
        if upper == "FAST":
            items += [FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE")]
        elif upper in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"):
            items.append(FetchItem(upper))
        elif upper == "RFC822":
            items.append(FetchItem("BODY", key="RFC822", sets_seen=True))
        elif upper == "RFC822.HEADER":
            items.append(FetchItem("BODY", key="RFC822.HEADER", section="HEADER"))
        elif upper == "RFC822.TEXT":
            items.append(FetchItem("BODY", key="RFC822.TEXT", section="TEXT", sets_seen=True))
        else:
            items.append(_body_item(atom))
    if not items:
        raise ParseError("FETCH needs at least one item")
    return items


def _body_item(atom: str) -> FetchItem:
    match = _BODY.fullmatch(atom)
    if match is None:
        raise ParseError(f"unsupported FETCH item {atom!r} (the demo has no ENVELOPE or "
                         "BODYSTRUCTURE)")
    section, fields = match[2].upper(), ()
    if (listed := _FIELDS.fullmatch(section)) is not None:
        section, fields = listed[1], tuple(listed[2].split())
        if not fields:
            raise ParseError(f"{section} needs at least one field name")
    elif section not in ("", "HEADER", "TEXT"):
        raise ParseError(f"unsupported section [{match[2]}] (the demo has no MIME parts)")
    return FetchItem("BODY", key=f"BODY[{match[2].upper()}]", section=section, fields=fields,
                     sets_seen=match[1] is None)


def section_bytes(raw: bytes, item: FetchItem) -> bytes:
    """The bytes a BODY / RFC822 item returns for one message."""
    header, text = _split(raw)
    if item.section.startswith("HEADER.FIELDS"):
        wanted, keep = {f.lower() for f in item.fields}, item.section == "HEADER.FIELDS"
        return b"".join(b for n, b in _header_blocks(raw) if (n in wanted) == keep) + b"\r\n"
    return {"HEADER": header, "TEXT": text}.get(item.section, raw)


def fetch_response(message: Candidate, items: Sequence[FetchItem]) -> bytes:
    """``* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER] {n}...)`` without the final CRLF."""
    out: list[bytes] = []
    for item in items:
        if item.name == "UID":
            out.append(b"UID %d" % message.uid)
        elif item.name == "FLAGS":
            out.append(f"FLAGS ({' '.join(sorted(message.flags))})".encode())
        elif item.name == "INTERNALDATE":
            out.append(f'INTERNALDATE "{imap_datetime(message.internaldate)}"'.encode())
        elif item.name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % len(message.raw))
        else:
            data = section_bytes(message.raw, item)
            out.append(b"%s {%d}\r\n%s" % (item.key.encode(), len(data), data))
    return b"* %d FETCH (%s)" % (message.seq, b" ".join(out))

