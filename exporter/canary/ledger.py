"""Canaries in flight: kept in memory and in an atomically written state file, so a restart
loses none of them and matches them later with their original send time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["CanaryRecord", "CanaryState"]

log = logging.getLogger(__name__)
STATE_VERSION = 1
# A canary that went lost is still recognised (as late) for this long, then forgotten.
LATE_WINDOW = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class CanaryRecord:
    """One canary message to one receiving mailbox."""

    token: str
    relay: str
    mailbox: str
    address: str
    sent_at: float  # wall clock: when the relay accepted the message (or DATA was sent)
    deadline: float  # wall clock: not seen by then, it is lost
    uncertain: bool = False  # the send timed out after DATA: it may or may not have gone out
    lost_at: float | None = None

    @property
    def lost(self) -> bool:
        return self.lost_at is not None


class CanaryState:
    """In-flight and recently lost canaries, keyed by (token, mailbox). Event-loop only."""

    def __init__(self, directory: str | None, *, instance: str) -> None:
        self.path = Path(directory, f"canaries-{instance}.json") if directory else None
        self._records: dict[tuple[str, str], CanaryRecord] = {}
        self.write_errors = 0
        self.last_error: str | None = None

    # -- queries -------------------------------------------------------------------------------

    def records(self) -> list[CanaryRecord]:
        return list(self._records.values())

    def in_flight(self) -> list[CanaryRecord]:
        return [r for r in self._records.values() if not r.lost]

    def get(self, token: str, mailbox: str) -> CanaryRecord | None:
        return self._records.get((token, mailbox))

    # -- changes -------------------------------------------------------------------------------

    def add(self, records: list[CanaryRecord]) -> None:
        for record in records:
            self._records[(record.token, record.mailbox)] = record
        self.save()

    def update(self, record: CanaryRecord) -> None:
        """Replace a canary's record (its send time became known)."""
        self._records[(record.token, record.mailbox)] = record
        self.save()

    def remove(self, token: str, mailbox: str) -> CanaryRecord | None:
        """Forget a canary that was seen; returns what was known of it."""
        record = self._records.pop((token, mailbox), None)
        if record is not None:
            self.save()
        return record

    def expire(self, now: float) -> list[CanaryRecord]:
        """Mark canaries past their deadline lost (once each) and forget very old lost ones."""
        newly: list[CanaryRecord] = []
        changed = False
        for key, record in list(self._records.items()):
            if record.lost_at is None and now >= record.deadline:
                lost = replace(record, lost_at=now)
                self._records[key] = lost
                newly.append(lost)
                changed = True
            elif record.lost_at is not None and now - record.lost_at > LATE_WINDOW:
                del self._records[key]
                changed = True
        if changed:
            self.save()
        return newly

    def forget_relays(self, keep: set[str]) -> None:
        """Drop canaries of relays no longer configured."""
        before = len(self._records)
        self._records = {k: r for k, r in self._records.items() if r.relay in keep}
        if len(self._records) != before:
            self.save()

    # -- persistence ---------------------------------------------------------------------------

    def load(self) -> int:
        """Read the state file, if any; returns how many canaries it held."""
        if self.path is None or not self.path.exists():
            return 0
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            records = [CanaryRecord(**_fields(item)) for item in doc.get("canaries", [])]
        except (OSError, ValueError, TypeError) as exc:
            log.error("canary state unreadable, starting empty",
                      extra={"path": str(self.path), "error": f"{type(exc).__name__}: {exc}"})
            return 0
        self._records = {(r.token, r.mailbox): r for r in records}
        return len(records)

    def save(self) -> None:
        """Write atomically (temp file, fsync, rename); a failure is counted, never raised."""
        if self.path is None:
            return
        doc = {"version": STATE_VERSION,
               "canaries": [asdict(r) for r in self._records.values()]}
        try:
            _atomic_write(self.path, json.dumps(doc, indent=1).encode("utf-8"))
        except OSError as exc:
            self.write_errors += 1
            self.last_error = f"cannot write {self.path}: {exc.strerror or exc}"
            log.error("canary state not saved", extra={"error": self.last_error})
        else:
            self.last_error = None


def _fields(item: Any) -> dict[str, Any]:
    known = CanaryRecord.__dataclass_fields__
    if not isinstance(item, dict):
        raise TypeError("canary entry is not an object")
    return {k: v for k, v in item.items() if k in known}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
