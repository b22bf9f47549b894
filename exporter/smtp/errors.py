"""ProbeError, the one way a probed server fails, and what a reply's code and an EHLO's AUTH
list are taken to mean."""

from __future__ import annotations

import re

from exporter.model import Phase, Reason
from exporter.peertext import clean

__all__ = ["ProbeError", "sasl_names", "status_reason"]

# How many AUTH mechanism names of an EHLO reply are kept; real servers offer a handful.
MAX_MECHANISMS = 32
# RFC 4422 section 3.1: a SASL mechanism name is 1 to 20 of A-Z, 0-9, "-" and "_".
_SASL_NAME = re.compile(r"[a-z0-9_-]{1,20}")


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
        detail = clean(detail)  # one line, valid and visible, capped, whatever was sent
        super().__init__(f"{phase}: {reason}: {detail}")
        self.phase = phase
        self.reason = reason
        self.detail = detail
        self.reply = None if reply is None else clean(reply)
        self.hint = None if hint is None else clean(hint)


def status_reason(code: int) -> Reason:
    """The reason an unexpected reply code gives: 4xx temporary, 5xx permanent, else protocol."""
    if 400 <= code < 500:
        return Reason.REJECTED_TEMPORARY
    if 500 <= code < 600:
        return Reason.REJECTED_PERMANENT
    return Reason.PROTOCOL_ERROR


def sasl_names(offered: list[str]) -> list[str]:
    """The AUTH mechanisms of an EHLO reply that are valid SASL names, each once, at most
    ``MAX_MECHANISMS``: whatever else a server lists never becomes a label or a hint."""
    names: list[str] = []
    for name in offered:
        if _SASL_NAME.fullmatch(name) and name not in names:
            names.append(name)
            if len(names) == MAX_MECHANISMS:
                break
    return names
