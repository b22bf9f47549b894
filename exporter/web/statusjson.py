"""The ``/status.json`` document: each relay's last probe, and the last canary it sent to each
mailbox with that canary's delivery path; ``q`` and ``state`` in the query string pick relays
as on the status page."""

from __future__ import annotations

import json
from typing import Any

from exporter.canary import CanarySnapshot, path_to_dict
from exporter.relay import Snapshot, iso_time, result_to_dict
from exporter.web.relaylist import PageQuery

__all__ = ["status_document", "status_json"]


def status_json(snap: Snapshot, canaries: CanarySnapshot | None, *, query: str = "") -> bytes:
    """The document as compact JSON, the form that stays fast at 10,000 relays."""
    return json.dumps(status_document(snap, canaries, query=query)).encode()


def status_document(snap: Snapshot, canaries: CanarySnapshot | None, *, query: str = ""
                    ) -> list[dict[str, Any]]:
    """One object per relay, in the ``probe --output json`` shape; a relay that sends canaries
    also has ``canaries``: per mailbox, the last one seen and its path. Without ``q`` or
    ``state`` in ``query``, every relay."""
    wanted = PageQuery.parse(query)
    body: dict[str, dict[str, Any]] = {
        name: result_to_dict(v.last) if v.last else {"relay": name, "success": None}
        for name, v in sorted(snap.relays.items())
        if not wanted.filtered or wanted.matches(name, v)
    }
    for (relay, mailbox), pair in sorted((canaries.pairs if canaries else {}).items()):
        if wanted.filtered and relay not in body:
            continue
        entry = body.setdefault(relay, {"relay": relay, "success": None})
        last = pair.last
        entry.setdefault("canaries", []).append({
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
    document = list(body.values())
    if snap.shard.sharded:  # each relay says which shard probes it
        document = [{**r, "shard": snap.shard.index, "total_shards": snap.shard.total}
                    for r in document]
    return document
