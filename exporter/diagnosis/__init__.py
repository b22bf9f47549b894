"""What a provider's reply means and what to do about it: a failed probe's or send's reply
looked up in known_replies.yaml, giving a stable cause id and a hint naming the fix."""

from __future__ import annotations

from exporter.diagnosis.known import Diagnosis, Entry, KnownReplyError, diagnose, load_entries

__all__ = ["Diagnosis", "Entry", "KnownReplyError", "diagnose", "load_entries"]
