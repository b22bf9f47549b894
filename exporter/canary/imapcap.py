"""imapclient with limits on what the server may make it hold: the size of a literal (only
message headers are fetched), of a response line, and of the untagged responses read for one
command or left unread. Past a limit the connection is dropped and the reason kept.

Python's imaplib, under imapclient, keeps every untagged response and reads every literal
whole, whatever its size: a server flooding responses, or announcing a 300 MB literal, made
the exporter hold all of it. The limits are enforced where imaplib reads from the socket."""

from __future__ import annotations

import ast
import contextlib
import imaplib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any, cast

from imapclient import IMAPClient
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS

from exporter.config import AuthConfig

__all__ = [
    "MAX_LINE",
    "MAX_LITERAL",
    "MAX_RESPONSES",
    "MAX_RESPONSE_BYTES",
    "CappedIMAPClient",
    "LimitExceeded",
    "Limits",
    "exception_text",
    "login_secrets",
    "xoauth2_secrets",
]

# One message's headers: a canary's are a few kilobytes.
MAX_LITERAL = 1 << 20
# One response line (imaplib's own limit is about the same).
MAX_LINE = 1 << 20
# Untagged responses read while one command runs (or during one IDLE check), and untagged
# responses read but not yet consumed: by count and by bytes.
MAX_RESPONSES = 20_000
MAX_RESPONSE_BYTES = 16 << 20

_DROPPED = "connection dropped; check that this host and port are the mailbox's IMAP server"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one IMAP connection may make the exporter hold."""

    literal: int = MAX_LITERAL
    line: int = MAX_LINE
    responses: int = MAX_RESPONSES
    response_bytes: int = MAX_RESPONSE_BYTES


class LimitExceeded(imaplib.IMAP4.abort):
    """The server sent more than a limit allows; the connection was dropped. The message
    names the limit and holds no server text."""


def _size(item: object) -> int:
    if isinstance(item, bytes | bytearray):
        return len(item)
    if isinstance(item, tuple):
        return sum(_size(part) for part in item)
    return 0


class _CappedReads(imaplib.IMAP4):
    """imaplib's reading with limits; mixed in before imapclient's IMAP4 classes."""

    limits: Limits

    def _setup_limits(self, limits: Limits, passed: list[str]) -> None:
        # before imaplib's __init__, which reads the greeting and the capabilities
        self.limits = limits
        self._passed = passed  # the reason a limit was passed goes here, for the client
        self._cycle_count = 0  # untagged lines read since the last tagged response
        self._cycle_bytes = 0
        self._held: object = None  # the untagged_responses dict counted below
        self._held_count = 0  # what it holds, counted as added (an upper bound)
        self._held_bytes = 0

    def new_cycle(self) -> None:
        """Start counting the responses of one read afresh (an IDLE check: its caller keeps
        none of the responses of the previous check)."""
        self._cycle_count = self._cycle_bytes = 0

    def _pass_limit(self, what: str) -> None:
        """Drop the connection and raise: nothing more is read, what was held is let go."""
        reason = f"IMAP server passed the limit on {what}; {_DROPPED}"
        self._passed.append(reason)
        self.untagged_responses = {}
        sock = getattr(self, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise LimitExceeded(reason)

    def _count(self, size: int) -> None:
        self._cycle_count += 1
        self._cycle_bytes += size
        limits = self.limits
        if self._cycle_count > limits.responses:
            self._pass_limit(f"untagged responses to one command (over {limits.responses})")
        if self._cycle_bytes > limits.response_bytes:
            self._pass_limit("untagged response bytes for one command "
                             f"(over {limits.response_bytes})")

    # -- imaplib's reading layer ---------------------------------------------------------------

    def _log(self, line: str) -> None:
        """imaplib keeps the last ten lines for its debug print, each up to 4 MB as repr: not
        here."""

    def readline(self) -> bytes:
        limit = self.limits.line
        line = cast(bytes, self.file.readline(limit + 1))
        if len(line) > limit:
            self._pass_limit(f"response line length (over {limit} bytes)")
        return line

    def read(self, size: int) -> bytes:
        """A literal: refused by its announced size, before any of it is read."""
        limit = self.limits.literal
        if size > limit:
            self._pass_limit(f"literal size ({size} bytes announced, at most {limit} allowed)")
        self._count(size)
        return cast(bytes, self.file.read(size))

    def _get_line(self) -> bytes:
        base: Any = super()  # imaplib's private methods are not in its stubs
        line = cast(bytes, base._get_line())
        tag = cast(bytes, self.tagpre)
        if line.startswith(tag) and tag:
            self.new_cycle()  # a command completed: its responses were taken
        else:
            self._count(len(line))
        return line

    def _append_untagged(self, typ: str, dat: Any) -> None:
        base: Any = super()
        base._append_untagged(typ, dat)
        held = self.untagged_responses
        if held is not self._held:  # imaplib starts a new dict on SELECT
            self._held, self._held_count, self._held_bytes = held, 0, 0
        self._held_count += 1
        self._held_bytes += _size(dat)
        limits = self.limits
        if self._held_count <= limits.responses and self._held_bytes <= limits.response_bytes:
            return
        # consumed responses are popped unseen: recount before deciding
        entries = [item for items in held.values() for item in items]
        self._held_count, self._held_bytes = len(entries), sum(_size(e) for e in entries)
        if self._held_count > limits.responses:
            self._pass_limit(f"unread untagged responses (over {limits.responses})")
        if self._held_bytes > limits.response_bytes:
            self._pass_limit(f"unread untagged response bytes (over {limits.response_bytes})")


class _CappedPlain(_CappedReads, IMAP4WithTimeout):  # type: ignore[misc]
    def __init__(self, host: str, port: int, timeout: float | None, limits: Limits,
                 passed: list[str]) -> None:
        self._setup_limits(limits, passed)
        IMAP4WithTimeout.__init__(self, host, port, timeout)


class _CappedTLS(_CappedReads, IMAP4_TLS):  # type: ignore[misc]
    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 timeout: float | None, limits: Limits, passed: list[str]) -> None:
        self._setup_limits(limits, passed)
        IMAP4_TLS.__init__(self, host, port, ssl_context, timeout)


class CappedIMAPClient(IMAPClient):  # type: ignore[misc]
    """IMAPClient over imaplib objects with limits (see ``Limits``); imaplib's debug log, which
    would print every server line unredacted, is off."""

    def __init__(self, host: str, *, port: int, ssl: bool,
                 ssl_context: ssl.SSLContext | None, timeout: float,
                 limits: Limits = Limits()) -> None:
        self.limits = limits
        self._passed: list[str] = []
        try:
            super().__init__(host, port=port, ssl=ssl, ssl_context=ssl_context,
                             timeout=timeout)
        except imaplib.IMAP4.error:
            if self._passed:  # imaplib rewraps the error of a command: say it plainly
                raise LimitExceeded(self._passed[0]) from None
            raise
        self._imap.debug = 0

    def _create_IMAP4(self) -> _CappedReads:
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _CappedTLS(self.host, self.port, self.ssl_context, timeout, self.limits,
                              self._passed)
        return _CappedPlain(self.host, self.port, timeout, self.limits, self._passed)

    @property
    def limit_passed(self) -> str | None:
        """Why the connection was dropped, if a limit was passed."""
        return self._passed[0] if self._passed else None

    def idle_check(self, timeout: float | None = None) -> list[Any]:
        self._imap.new_cycle()
        return cast(list[Any], super().idle_check(timeout))

    def buffered(self) -> bool:
        """Whether a response already waits in the client's buffers, where idle_check's poll
        of the socket cannot see it (an EXISTS sent together with the "+ idling")."""
        sock = self.socket()
        pending = getattr(sock, "pending", None)
        if callable(pending) and pending() > 0:
            return True
        peek = getattr(getattr(self._imap, "file", None), "peek", None)
        if not callable(peek):
            return False
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return bool(peek(1))
        except (OSError, ValueError):
            return False
        finally:
            sock.settimeout(timeout)


def exception_text(exc: BaseException) -> str:
    """An IMAP exception's text, raw (still to be cleaned). imaplib raises with the server's
    bytes, and imapclient passes on their repr: both are decoded, so that a password the
    server echoed reads as itself (a repr doubles its backslashes) and can be redacted."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        try:
            raw = ast.literal_eval(text)  # literals only: nothing is run
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raw = text[2:-1]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text


def login_secrets(auth: AuthConfig) -> list[str]:
    """What an IMAP server must never be seen echoing: the password, also as LOGIN quotes it
    and inside the PLAIN string, and a static token, also inside the XOAUTH2 string, each
    also as a bytes repr shows it (imaplib puts server lines in errors with %r); the
    Redactor adds their base64 and URL-encoded forms."""
    user = auth.username or ""
    out: list[str] = []
    if auth.password is not None:
        password = auth.password.reveal()
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        out += [password, quoted, f"\x00{user}\x00{password}"]
        out += [form for text in (password, quoted) for form in _reprs(text)]
    if auth.token is not None:
        out += xoauth2_secrets(user, auth.token.reveal())
    return out


def _reprs(text: str) -> set[str]:
    """``text`` as it shows inside the repr of bytes holding it: quotes escaped or not."""
    raw = text.encode("utf-8")
    return {repr(raw)[2:-1], repr(raw + b'"')[2:-2]}


def xoauth2_secrets(user: str, token: str) -> list[str]:
    """An access token, and the XOAUTH2 string that carries it."""
    return [token, f"user={user}\x01auth=Bearer {token}\x01\x01"]


class _NoServerBytes(logging.Filter):
    """imapclient logs server text it cannot decode as ASCII, raw: a server could make it log
    an echoed password. The message is kept, the bytes are not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = "IMAP server text was not ASCII; its other bytes were dropped"
            record.args = ()
        return True


logging.getLogger("imapclient.util").addFilter(_NoServerBytes())
