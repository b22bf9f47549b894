"""The demo mailbox's storage: thread-safe in-memory folders (INBOX, Junk, Trash) per user."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

__all__ = ["FOLDERS", "Folder", "MailStore", "StoredMessage"]

FOLDERS = {"INBOX": "", "Junk": "\\Junk", "Trash": "\\Trash"}  # name -> SPECIAL-USE attribute


@dataclass
class StoredMessage:
    """One message of a folder; ``internaldate`` is when it was delivered."""

    uid: int
    raw: bytes
    internaldate: datetime
    flags: set[str]


@dataclass
class Folder:
    """A folder's state, or a caller's copy of it (``MailStore.view``)."""

    uidvalidity: int
    uidnext: int = 1
    messages: list[StoredMessage] = field(default_factory=list)
    recent: set[int] = field(default_factory=set)  # not yet seen by a read-write session


class MailStore:
    """Thread-safe in-memory folders: INBOX and Junk (SPECIAL-USE \\Junk) and Trash, per user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[tuple[str, str], Folder] = {}
        self._watchers: list[Callable[[str, str], None]] = []

    @staticmethod
    def folder_name(name: str) -> str | None:
        """The canonical name of a folder (INBOX in any case), or None if there is none."""
        return "INBOX" if name.upper() == "INBOX" else name if name in FOLDERS else None

    def _box(self, user: str, folder: str) -> Folder:
        name = self.folder_name(folder)
        if name is None:
            raise ValueError(f"no folder {folder!r}; the demo has {', '.join(FOLDERS)}")
        return self._folders.setdefault((user, name), Folder(int(time.time())))

    def deliver(self, user: str, raw: bytes, *, folder: str = "INBOX") -> int:
        """Store a message (line ends made CRLF) and return its UID; wakes IDLE sessions."""
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        with self._lock:
            box = self._box(user, folder)
            uid, box.uidnext = box.uidnext, box.uidnext + 1
            box.messages.append(StoredMessage(uid, raw, datetime.now(UTC), set()))
            box.recent.add(uid)
        self._notify(user, folder)
        return uid

    def messages(self, user: str, folder: str) -> list[StoredMessage]:
        """A copy of the folder's messages in UID order."""
        return self.view(user, folder).messages

    def view(self, user: str, folder: str, *, claim_recent: bool = False) -> Folder:
        """A copy of a folder; ``claim_recent`` makes its \\Recent messages the caller's."""
        with self._lock:
            box = self._box(user, folder)
            copies = [replace(m, flags=set(m.flags)) for m in box.messages]
            view = Folder(box.uidvalidity, box.uidnext, copies, set(box.recent))
            if claim_recent:
                box.recent.clear()
            return view

    def store_flags(self, user: str, folder: str, uids: Collection[int], flags: set[str], *,
                    mode: str) -> dict[int, set[str]]:
        """Add (``+``), remove (``-``) or replace (``""``) flags; the new flags by UID."""
        with self._lock:
            box = self._box(user, folder)
            for m in box.messages:
                if m.uid in uids:
                    m.flags = {"+": m.flags | flags, "-": m.flags - flags}.get(mode, set(flags))
            return {m.uid: set(m.flags) for m in box.messages if m.uid in uids}

    def expunge(self, user: str, folder: str, uids: Collection[int] | None = None) -> list[int]:
        """Remove the \\Deleted messages (of ``uids`` only, if given); their UIDs."""
        with self._lock:
            box = self._box(user, folder)
            gone = {m.uid for m in box.messages
                    if "\\Deleted" in m.flags and (uids is None or m.uid in uids)}
            box.messages = [m for m in box.messages if m.uid not in gone]
            box.recent -= gone
        if gone:
            self._notify(user, folder)
        return sorted(gone)

    def copy(self, user: str, folder: str, uids: Collection[int], dest: str, *,
             move: bool = False) -> tuple[int, list[tuple[int, int]]]:
        """Copy or move messages: the destination's UIDVALIDITY and (old, new) UID pairs."""
        with self._lock:
            source, target, wanted = self._box(user, folder), self._box(user, dest), set(uids)
            chosen = [m for m in source.messages if m.uid in wanted]
            pairs = [(m.uid, target.uidnext + i) for i, m in enumerate(chosen)]
            target.messages += [replace(m, uid=new, flags=set(m.flags))
                                for m, (_, new) in zip(chosen, pairs, strict=True)]
            target.recent |= {new for _, new in pairs}
            target.uidnext += len(pairs)
            if move:
                source.messages = [m for m in source.messages if m.uid not in wanted]
                source.recent -= wanted
        self._notify(user, dest)
        if move:
            self._notify(user, folder)
        return target.uidvalidity, pairs

    def watch(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(user, folder)``, in the changing thread, when a folder changes."""
        with self._lock:
            self._watchers.append(callback)

    def unwatch(self, callback: Callable[[str, str], None]) -> None:
        with self._lock, suppress(ValueError):
            self._watchers.remove(callback)

    def _notify(self, user: str, folder: str) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for callback in watchers:
            callback(user, self.folder_name(folder) or folder)
