"""Received header parsing (RFC 5321 4.4): one trace field into a hop, with its TLS facts.

Reads the forms Postfix, Exim, Sendmail, Microsoft 365, Gmail, Dovecot LMTP, Amazon SES and
qmail write; one pass over the text, so the cost is linear in its length.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from email.utils import parsedate_tz

from exporter.headers.rfc8601 import WHITESPACE, LexicalError, field_body_defect
from exporter.peertext import clean

__all__ = ["Hop", "parse_received"]

# The longest from/by/with/TLS text kept, and the longest date text read.
MAX_FIELD = 120
MAX_DATE = 120
# Clause keywords (RFC 5321 Stamp and Opt-info), and Exim's "tls <cipher>" clause.
_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for", "tls"})
# With-protocols that say TLS (RFC 3848, RFC 6531; Gmail's SMTPS, Microsoft's HTTPS).
_TLS_PROTOCOLS = frozenset({
    "ESMTPS", "ESMTPSA", "LMTPS", "LMTPSA", "UTF8SMTPS", "UTF8SMTPSA", "UTF8LMTPS",
    "UTF8LMTPSA", "SMTPS", "HTTPS",
})
_WORD_END = WHITESPACE | frozenset('()";')
# Postfix: "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) ...)".
_POSTFIX_TLS = re.compile(r"\s*using\s+([\w.]{1,40})\s+with\s+cipher\s+([\w.-]{1,80})")
# Microsoft, Gmail, Sendmail: "version=TLS1_2, cipher=..." / "version=TLSv1.3 cipher=...".
_TLS_VERSION = re.compile(r"(?:^|[\s,(])version=((?:TLS|SSL)[\w.]{0,20})", re.IGNORECASE)
_TLS_CIPHER = re.compile(r"(?:^|[\s,(])cipher=([\w.-]{1,80})", re.IGNORECASE)
# Exim: "(TLS1.3)" after the protocol, or the older "(TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256)".
_EXIM_TLS = re.compile(r"\s*((?:TLS|SSL)v?1(?:[._]\d)?|SSLv3)(?::([\w.-]{1,80}))?(?::\d{1,4})?\s*",
                       re.IGNORECASE)
_VERSION_FORM = re.compile(r"(?:TLS|SSL)_?v?(\d)(?:[._](\d))?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Hop:
    """One Received field; ``error`` says why it did not parse (what could be read is kept).

    Every text is peer text made safe (``peertext.clean``); ``timestamp`` is Unix time."""

    from_: str | None
    by: str | None
    with_: str | None
    tls_version: str | None
    tls_cipher: str | None
    timestamp: float | None
    raw: str
    error: str | None = None

    @property
    def encrypted(self) -> bool:
        """The hop says it came over TLS: an "S" protocol (ESMTPS, LMTPS...) or a TLS version
        or cipher written."""
        protocol = (self.with_ or "").split(" ")[0].upper()
        return protocol in _TLS_PROTOCOLS or self.tls_version is not None or (
            self.tls_cipher is not None)


@dataclass(slots=True)
class _Token:
    kind: str  # "word", "comment", "quoted" or ";"
    text: str


def parse_received(value: str) -> Hop:
    """Parse one Received header value (or a whole ``Received: ...`` field); never raises."""
    start = _value_start(value)
    raw = clean(value[start:])
    defect = field_body_defect(value, start)
    if defect is not None:
        return _failed(raw, str(defect))
    try:
        tokens = _tokens(value, start)
    except LexicalError as exc:
        return _failed(raw, str(exc))
    last_semi = max((i for i, t in enumerate(tokens) if t.kind == ";"), default=-1)
    clauses = tokens if last_semi < 0 else tokens[:last_semi]
    fields, tls, problem = _clauses(clauses)
    timestamp, date_problem = (None, "no date after a ';'") if last_semi < 0 else _date(
        tokens[last_semi + 1:])
    return Hop(
        from_=fields.get("from"), by=fields.get("by"), with_=fields.get("with"),
        tls_version=tls[0], tls_cipher=tls[1], timestamp=timestamp,
        raw=raw, error=problem or date_problem,
    )


def _failed(raw: str, error: str) -> Hop:
    return Hop(None, None, None, None, None, None, raw, clean(error))


def _value_start(text: str) -> int:
    """After "Received:" when the field name is there, else 0."""
    return 9 if text[:9].lower() == "received:" else 0


def _tokens(text: str, start: int) -> list[_Token]:
    """Words, top-level comments (their whole inner text), quoted strings and ";"s."""
    tokens: list[_Token] = []
    pos, end = start, len(text)
    while pos < end:
        char = text[pos]
        if char in WHITESPACE:
            pos += 1
        elif char == ";":
            tokens.append(_Token(";", ";"))
            pos += 1
        elif char == "(":
            close = _comment_end(text, pos)
            tokens.append(_Token("comment", text[pos + 1:close - 1]))
            pos = close
        elif char == ")":
            raise LexicalError("unbalanced ')'", pos)
        elif char == '"':
            close = _quoted_end(text, pos)
            tokens.append(_Token("quoted", text[pos + 1:close - 1]))
            pos = close
        else:
            run = pos
            while pos < end and text[pos] not in _WORD_END:
                pos += 1
            tokens.append(_Token("word", text[run:pos]))
    return tokens


def _comment_end(text: str, start: int) -> int:
    """The offset just after the comment that opens at ``start`` (nesting and escapes kept)."""
    depth, pos, end = 0, start, len(text)
    while pos < end:
        char = text[pos]
        pos += 1
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos
    raise LexicalError("unterminated comment", start)


def _quoted_end(text: str, start: int) -> int:
    pos, end = start + 1, len(text)
    while pos < end:
        char = text[pos]
        if char == '"':
            return pos + 1
        pos += 2 if char == "\\" else 1
    raise LexicalError("unterminated quoted string", start)


def _clauses(tokens: list[_Token]) -> tuple[dict[str, str], tuple[str | None, str | None],
                                             str | None]:
    """The clause values (first of each keyword), the TLS facts of the comments, and why the
    clauses do not parse, if they do not."""
    fields: dict[str, str] = {}
    version: str | None = None
    cipher: str | None = None
    keyword: str | None = None
    words: list[str] = []  # the current "with" clause's words: "Microsoft SMTP Server"
    problem: str | None = None
    for token in tokens:
        if token.kind == "comment":
            found = _tls_of_comment(token.text)
            version, cipher = version or found[0], cipher or found[1]
            continue
        if token.kind == ";":
            continue  # an earlier ";" (a "for" list, Exchange's stray one): not the date's
        lowered = token.text.lower() if token.kind == "word" else ""
        if lowered in _KEYWORDS:
            _close(fields, keyword, words)
            keyword, words = lowered, []
        elif keyword is None:
            if problem is None:
                problem = f"expected from, by, with, id or for, found {token.text[:40]!r}"
        elif keyword == "with" or not words:
            words.append(token.text)
    _close(fields, keyword, words)
    if cipher is None and "tls" in fields:  # Exim: "with esmtps (TLS1.3) tls <cipher>"
        cipher = fields["tls"]
    return fields, (version, cipher), clean(problem) if problem else None


def _close(fields: dict[str, str], keyword: str | None, words: list[str]) -> None:
    if keyword is not None and words and keyword not in fields:
        fields[keyword] = clean(" ".join(words), limit=MAX_FIELD)


def _tls_of_comment(text: str) -> tuple[str | None, str | None]:
    """(version, cipher) a comment states, in Postfix's, Microsoft's, Gmail's or Exim's form."""
    postfix = _POSTFIX_TLS.match(text)
    if postfix is not None:
        return _version(postfix[1]), clean(postfix[2], limit=MAX_FIELD)
    exim = _EXIM_TLS.fullmatch(text) if len(text) <= 200 else None
    if exim is not None:
        return _version(exim[1]), clean(exim[2], limit=MAX_FIELD) if exim[2] else None
    version = _TLS_VERSION.search(text)
    cipher = _TLS_CIPHER.search(text)
    return (_version(version[1]) if version else None,
            clean(cipher[1], limit=MAX_FIELD) if cipher else None)


def _version(text: str) -> str:
    """TLS1_2, TLS1.2 and TLSv1.2 all read "TLSv1.2"; anything else is kept as written."""
    form = _VERSION_FORM.fullmatch(text)
    if form is None:
        return clean(text, limit=MAX_FIELD)
    family = text[:3].upper()
    return f"{family}v{form[1]}.{form[2]}" if form[2] else f"{family}v{form[1]}"


def _date(tokens: list[_Token]) -> tuple[float | None, str | None]:
    """Unix time of the date after the last ";" (comments dropped, obsolete forms read)."""
    text = " ".join(t.text for t in tokens if t.kind == "word")
    if not text:
        return None, "no date after the last ';'"
    if len(text) > MAX_DATE:
        return None, "date too long"
    try:
        parts = parsedate_tz(text)
        if parts is None:
            return None, clean(f"bad date {text[:60]!r}")
        year = parts[0]
        if not 1970 <= year <= 9999:
            return None, clean(f"date out of range {text[:60]!r}")
        # A missing zone or -0000 means the time is UTC (RFC 5322 3.3, 4.3).
        return float(calendar.timegm((*parts[:6], 0, 0, 0)) - (parts[9] or 0)), None
    except (ValueError, IndexError, TypeError, OverflowError):
        return None, clean(f"bad date {text[:60]!r}")
