"""ProbeError, the one way a probed server fails, and the reply text helpers that name it."""

from __future__ import annotations

from aiosmtplib.response import SMTPResponse

from exporter.model import Phase, Reason

__all__ = ["ProbeError", "printable", "reply_text", "status_reason"]


class ProbeError(Exception):
    """A probed server failed in a named way; ``detail`` is one line without secrets."""

    def __init__(
        self,
        phase: Phase,
        reason: Reason,
        detail: str,
        *,
        reply: str | None = None,
        hint: str | None = None,
    ) -> None:
        detail = printable(" ".join(detail.split())[:500])  # one line, whatever was sent
        super().__init__(f"{phase}: {reason}: {detail}")
        self.phase = phase
        self.reason = reason
        self.detail = detail
        self.reply = reply
        self.hint = hint


def printable(text: str) -> str:
    """Server text as valid Unicode: bytes that were not UTF-8 (kept by aiosmtplib as lone
    surrogates, which no page, log or JSON encoder accepts) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def reply_text(resp: SMTPResponse) -> str:
    """A reply as one printable line: code and text, at most 500 characters."""
    return printable(f"{resp.code} {' '.join(resp.message.splitlines())}"[:500])


def status_reason(code: int) -> Reason:
    """The reason an unexpected reply code gives: 4xx temporary, 5xx permanent, else protocol."""
    if 400 <= code < 500:
        return Reason.REJECTED_TEMPORARY
    if 500 <= code < 600:
        return Reason.REJECTED_PERMANENT
    return Reason.PROTOCOL_ERROR
