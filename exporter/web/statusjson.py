"""The ``/status.json`` document: each relay's last probe, and the last canary it sent to each
mailbox with that canary's delivery path; ``q`` and ``state`` in the query string pick relays
as on the status page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from exporter.canary import CanarySnapshot, path_to_dict
from exporter.relay import Snapshot, iso_time, result_to_dict
from exporter.web.relaylist import PageQuery

__all__ = ["status_document", "status_json"]


def status_json(snap: Snapshot, canaries: CanarySnapshot | None, *, query: str = "") -> bytes:
    """The document as compact JSON, encoded one relay at a time: at 10,000 relays it never
    holds every relay's objects at once."""
    return b"[" + b", ".join(json.dumps(entry).encode()
                             for entry in _entries(snap, canaries, query)) + b"]"


def status_document(snap: Snapshot, canaries: CanarySnapshot | None, *, query: str = ""
                    ) -> list[dict[str, Any]]:
    """One object per relay, in the ``probe --output json`` shape; a relay that sends canaries
    also has ``canaries``: per mailbox, the last one seen and its path. Without ``q`` or
    ``state`` in ``query``, every relay."""
    return list(_entries(snap, canaries, query))


def _entries(snap: Snapshot, canaries: CanarySnapshot | None, query: str
             ) -> Iterator[dict[str, Any]]:
    """The relays in name order, then relays known only by their canaries."""
    wanted = PageQuery.parse(query)
    sent: dict[str, list[dict[str, Any]]] = {}
    for (relay, mailbox), pair in sorted((canaries.pairs if canaries else {}).items()):
        last = pair.last
        sent.setdefault(relay, []).append({
            "mailbox": mailbox,
            "last": None if last is None else {
                "token": last.token,
                "folder": last.folder,
                "sent_at": iso_time(last.sent_at),
                "seen_at": iso_time(last.seen_at),
                "latency": round(last.latency, 3),
                "receiver_delay": (None if last.receiver_delay is None
                                   else round(last.receiver_delay, 3)),
                "path": None if last.path is None else path_to_dict(last.path),
            },
        })
    shard = ({"shard": snap.shard.index, "total_shards": snap.shard.total}
             if snap.shard.sharded else {})  # each relay says which shard probes it
    for name, view in sorted(snap.relays.items()):
        if wanted.filtered and not wanted.matches(name, view):
            continue
        entry: dict[str, Any] = (result_to_dict(view.last) if view.last
                                 else {"relay": name, "success": None})
        if name in sent:
            entry["canaries"] = sent[name]
        yield entry | shard
    if wanted.filtered:
        return
    for relay, entries in sent.items():
        if relay not in snap.relays:
            yield {"relay": relay, "success": None, "canaries": entries} | shard
