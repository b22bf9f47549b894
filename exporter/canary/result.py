"""Canary outcomes as values: a send through a relay, and an arrival in a mailbox."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import Phase, Reason, TranscriptLine

__all__ = [
    "Arrival",
    "CanarySent",
]


@dataclass(frozen=True, slots=True)
class CanarySent:
    """The outcome of sending one canary through a relay."""

    relay: str
    token: str
    success: bool
    started_at: float
    sent_at: float | None  # wall clock when the relay accepted the message
    uncertain: bool = False  # the connection failed after the message was handed over
    accepted: tuple[str, ...] = ()  # recipients the relay accepted
    phases: dict[Phase, float] = field(default_factory=dict)
    reason: Reason | None = None
    hint: str | None = None
    cause: str | None = None  # known cause id of the failure (known_replies.yaml), "" if none
    detail: str | None = None
    reply: str | None = None
    failed_phase: Phase | None = None
    transcript: tuple[TranscriptLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Arrival:
    """A canary seen in a mailbox, with what the receiver said about it."""

    token: str
    mailbox: str
    folder: str  # "inbox", "spam" or the configured label of another folder
    folder_name: str  # the IMAP name, e.g. "[Gmail]/Spam"
    seen_at: float  # wall clock when the watcher found it
    internal_date: float | None  # when the receiving server stored it (INTERNALDATE)
    headers: tuple[tuple[str, str], ...]  # (name, value) of every header, in order
