"""The outcome of one relay probe, as a value."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from exporter.model import HINTS, Phase, Reason, TLSInfo, TranscriptLine

__all__ = [
    "RelayResult",
    "crashed_result",
]


@dataclass(frozen=True, slots=True)
class RelayResult:
    """The outcome of one relay probe."""

    relay: str
    success: bool
    started_at: float
    duration: float
    phases: dict[Phase, float] = field(default_factory=dict)
    reason: Reason | None = None
    hint: str | None = None
    cause: str | None = None  # known cause id of the failure (known_replies.yaml), "" if none
    detail: str | None = None
    reply: str | None = None
    failed_phase: Phase | None = None
    expected: Reason | None = None
    observed: Reason | None = None
    tls: TLSInfo | None = None
    auth_mechanisms: tuple[str, ...] = ()
    transcript: tuple[TranscriptLine, ...] = ()


def crashed_result(relay: str, started: float, exc: Exception) -> RelayResult:
    """The result of a probe that raised: a bug in the exporter, not a failure of the relay,
    shown as protocol_error with the exception's type (never its text, which may hold peer
    bytes or secrets)."""
    return RelayResult(
        relay=relay,
        success=False,
        started_at=started,
        duration=time.time() - started,
        reason=Reason.PROTOCOL_ERROR,
        hint=HINTS[Reason.PROTOCOL_ERROR],
        detail=f"exporter error: {type(exc).__name__}",
    )
