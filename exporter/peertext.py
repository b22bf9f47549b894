"""Text from peers, made safe in one place: decoded with replacement, control characters made
visible, secrets redacted in every form a server may echo them, then capped."""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable, Sequence

__all__ = ["MAX_TEXT", "REDACTED", "Redactor", "clean", "clean_lines", "visible"]

REDACTED = "***"
# The longest piece of a peer's text kept in a result, a log line or a transcript line.
MAX_TEXT = 500
# Secrets shorter than this are not searched for: "ab" would redact half of every reply.
MIN_SECRET = 4
_ELLIPSIS = "…"
# C0 controls, DEL and C1 controls: what a terminal, a log parser or a label must not see raw;
# and the Unicode line and paragraph separators and bidirectional overrides, which split a
# log line or reorder what a reader sees.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Lone surrogates: bytes that were not UTF-8 (decoded with surrogateescape, as aiosmtplib and
# imaplib keep them) or a JSON "\\ud800" escape; no encoder, page or strict parser takes them.
_SURROGATES = re.compile("[\ud800-\udfff]")
_SPACE = re.compile(r"\s+")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` as valid, printable Unicode: lone surrogates become U+FFFD, and control
    characters are shown escaped (ESC as ``\\x1b``, U+2028 as ``\\u2028``), so nothing a peer
    sends can steer a terminal or a parser. Applying it twice changes nothing more."""
    return _CONTROLS.sub(_escape, _SURROGATES.sub("\ufffd", text))


class Redactor:
    """Hides secrets in text: raw, URL-encoded (``quote`` with and without "/" kept,
    JavaScript's ``encodeURIComponent``, ``quote_plus``), base64, with
    its whitespace collapsed, and, at the end of a text that was cut, any prefix of 4 or more
    characters of any of those forms."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET:
                continue
            raw = secret.encode("utf-8")
            forms |= {
                secret,
                visible(secret),
                " ".join(secret.split()),
                urllib.parse.quote(secret, safe=""),
                urllib.parse.quote(secret),  # "/" kept, as quote() and many servers leave it
                urllib.parse.quote(secret, safe="!'()*-._~"),  # encodeURIComponent
                urllib.parse.quote_plus(secret),
                base64.b64encode(raw).decode("ascii"),
                base64.b64encode(raw).decode("ascii").rstrip("="),
            }
        self._forms = sorted((f for f in forms if len(f) >= MIN_SECRET), key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor with more secrets to hide."""
        merged = Redactor(secrets)
        merged._forms = sorted(set(self._forms) | set(merged._forms), key=len, reverse=True)
        return merged

    def redact(self, text: str) -> str:
        """``text`` with every whole form of every secret replaced by ``***``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
            collapsed = _SPACE.sub(" ", text)
            if form in collapsed and form not in text:  # hidden by a line break or a tab
                text = collapsed.replace(form, REDACTED)
        return text

    def redact_tail(self, text: str) -> str:
        """``text`` whose end may have cut a secret: a trailing prefix (4 characters or more)
        of any form is replaced by ``***``."""
        for form in self._forms:
            for size in range(len(form) - 1, MIN_SECRET - 1, -1):
                if text.endswith(form[:size]):
                    return text[:-size] + REDACTED
        return text


NO_SECRETS = Redactor()


def clean(
    text: str | bytes,
    *,
    redactor: Redactor = NO_SECRETS,
    limit: int = MAX_TEXT,
    one_line: bool = True,
) -> str:
    """Peer text made safe to store, label, log or print, in this order: decode (bytes as
    UTF-8 with replacement), collapse whitespace to one line (``one_line``), make controls
    visible, redact secrets, cap at ``limit`` characters; a secret cut by the cap is redacted
    too."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if one_line:
        text = " ".join(text.split())
    text = redactor.redact(visible(text))
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(_ELLIPSIS))]
    return redactor.redact_tail(cut) + _ELLIPSIS


def clean_lines(
    lines: Sequence[str | bytes], *, redactor: Redactor = NO_SECRETS, limit: int = MAX_TEXT
) -> list[str]:
    """The lines of one peer message (a multi-line reply), each made safe with ``clean``. A
    secret split across lines, which no single line shows whole, is redacted too: the lines
    are then cleaned as one, joined the way the secret was split."""
    texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in lines]
    if redactor and len(texts) > 1:
        shown = [visible(t) for t in texts]
        for sep in ("", " "):
            whole = sep.join(shown)
            if redactor.redact(whole) != sep.join(redactor.redact(t) for t in shown):
                return [clean(whole, redactor=redactor, limit=limit)]
    return [clean(t, redactor=redactor, limit=limit) for t in texts]
