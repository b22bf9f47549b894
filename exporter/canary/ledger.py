"""Canaries in flight: kept in memory and in an atomically written state file, so a restart
loses none of them and matches them later with their original send time.

Changes are made in memory on the event loop; the file is written in a worker thread. Changes
made while a write runs are coalesced into one following write, and ``save()`` returns once a
write that includes every change made before the call has finished.

A state file is loaded only if this user owns it and no one else may write it: another user
could otherwise plant thousands of canaries, all soon counted lost. A refused file is moved
aside (kept for a look, not deleted) and the exporter starts empty."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from exporter.config import writable_by_others

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
    """In-flight and recently lost canaries, keyed by (token, mailbox). Event-loop only: every
    change is made in memory at once and written to the state file off the loop."""

    def __init__(self, directory: str | None, *, instance: str) -> None:
        self.path = Path(directory, f"canaries-{instance}.json") if directory else None
        self._records: dict[tuple[str, str], CanaryRecord] = {}
        self.write_errors = 0
        self.last_error: str | None = None
        self.refused: str | None = None  # why the state file was not loaded, if it was not
        self._changes = 0  # changes made so far
        self._taken = 0  # changes included in the write running now or in a finished one
        self._running: asyncio.Future[None] | None = None  # done when the running write ends
        self._next: asyncio.Future[None] | None = None  # done when the following write ends
        self._writer: asyncio.Task[None] | None = None

    # -- queries -------------------------------------------------------------------------------

    def records(self) -> list[CanaryRecord]:
        return list(self._records.values())

    def in_flight(self) -> list[CanaryRecord]:
        return [r for r in self._records.values() if not r.lost]

    def get(self, token: str, mailbox: str) -> CanaryRecord | None:
        return self._records.get((token, mailbox))

    # -- changes (each one is written soon; await save() to know it is on disk) ----------------

    def add(self, records: list[CanaryRecord]) -> None:
        for record in records:
            self._records[(record.token, record.mailbox)] = record
        self._changed()

    def update(self, record: CanaryRecord) -> None:
        """Replace a canary's record (its send time became known)."""
        self._records[(record.token, record.mailbox)] = record
        self._changed()

    def remove(self, token: str, mailbox: str) -> CanaryRecord | None:
        """Forget a canary that was seen; returns what was known of it."""
        record = self._records.pop((token, mailbox), None)
        if record is not None:
            self._changed()
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
            self._changed()
        return newly

    def forget_relays(self, keep: set[str]) -> None:
        """Drop canaries of relays no longer configured."""
        before = len(self._records)
        self._records = {k: r for k, r in self._records.items() if r.relay in keep}
        if len(self._records) != before:
            self._changed()

    # -- persistence ---------------------------------------------------------------------------

    def load(self) -> int:
        """Read the state file, if any, and if it can be trusted (see ``refused``); returns
        how many canaries it held."""
        if self.path is None:
            return 0
        try:
            # not through a symlink, and without blocking on a FIFO; checked on the open file
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            return self._unreadable(exc)
        try:
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise ValueError("not a regular file")
                problem = _untrusted(st)
                if problem is not None:
                    self._refuse(problem)
                    return 0
                doc = json.loads(fh.read().decode("utf-8"))
            records = [CanaryRecord(**_fields(item)) for item in doc.get("canaries", [])]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            return self._unreadable(exc)
        self._records = {(r.token, r.mailbox): r for r in records}
        return len(records)

    def _unreadable(self, exc: BaseException) -> int:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.error("canary state unreadable, starting empty",
                  extra={"path": str(self.path), "error": f"{type(exc).__name__}: {text}"})
        return 0

    def _refuse(self, problem: str) -> None:
        """Start empty; move the file aside so the next write does not replace it."""
        path = self.path
        assert path is not None
        aside = path.with_name(path.name + ".refused")
        try:
            os.replace(path, aside)
            kept, where = f"moved to {aside}", aside
        except OSError as exc:
            kept, where = f"left in place ({exc.strerror or exc})", path
        uid = os.geteuid()
        self.refused = f"{path} {problem}; not loaded, {kept}"
        log.error("canary state file refused, starting empty", extra={
            "path": str(path), "problem": problem, "kept": kept,
            "fix": f"look at {where}, then remove it; if this exporter (uid {uid}) wrote it, "
                   "find what changed its owner or mode"})

    async def save(self) -> None:
        """Return once every change made before this call is in a finished write.

        Concurrent callers share writes: a change made while a write runs waits for the
        one following write, which takes all such changes at once. A failed write is
        counted in ``write_errors`` and ``last_error``, never raised."""
        if self.path is None:
            return
        if self._changes <= self._taken:
            if self._running is None:
                return
            done = self._running
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            done = self._next
            self._start_writer()
        # shielded: a cancelled caller must not cancel the write others wait for
        await asyncio.shield(done)

    async def flush(self) -> None:
        """Write the file now, changed or not, and return once it is written: at stop, and
        when a reload moves the ledger, the file always holds what is in flight."""
        self._changed()
        await self.save()

    def _changed(self) -> None:
        self._changes += 1
        if self.path is not None:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            return  # the running writer goes on while changes are not yet taken
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a script, a test): the next save() on one writes
        self._writer = loop.create_task(self._write_pending(), name="canary:state-write")

    async def _write_pending(self) -> None:
        path = self.path
        assert path is not None
        loop = asyncio.get_running_loop()
        while self._taken < self._changes:
            self._taken = self._changes
            done = self._next or loop.create_future()
            self._running, self._next = done, None
            # CanaryRecord is frozen: this tuple is a snapshot no later change can alter.
            records = tuple(self._records.values())
            try:
                await asyncio.to_thread(_write_records, path, records)
            except OSError as exc:
                self.write_errors += 1
                self.last_error = f"cannot write {path}: {exc.strerror or exc}"
                log.error("canary state not saved", extra={"error": self.last_error})
            else:
                self.last_error = None
            finally:
                self._running = None
                if not done.done():
                    done.set_result(None)


def _untrusted(st: os.stat_result) -> str | None:
    """Why a state file must not be loaded, or None: it must be owned by this user and
    writable by no one else but this user's own group (Kubernetes' fsGroup makes the files of
    a volume group-writable by the pod's group)."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if writable_by_others(st):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _fields(item: Any) -> dict[str, Any]:
    known = CanaryRecord.__dataclass_fields__
    if not isinstance(item, dict):
        raise TypeError("canary entry is not an object")
    return {k: v for k, v in item.items() if k in known}


_RECORD_FIELDS = tuple(f.name for f in fields(CanaryRecord))


def _write_records(path: Path, records: tuple[CanaryRecord, ...]) -> None:
    # getattr per field, not asdict(): the fields are plain values, and asdict's deep copy
    # takes ten times as long, holding the GIL the event loop needs
    doc = {"version": STATE_VERSION,
           "canaries": [{name: getattr(r, name) for name in _RECORD_FIELDS} for r in records]}
    _atomic_write(path, json.dumps(doc, indent=1).encode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
