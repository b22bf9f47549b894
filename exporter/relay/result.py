"""The outcome of one relay probe, as a value."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import Phase, Reason, TLSInfo, TranscriptLine

__all__ = [
    "RelayResult",
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
