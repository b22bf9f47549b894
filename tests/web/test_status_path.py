"""The status page and /status.json show a canary's delivery path: hops, delays, locks, clock
skew with its raw value, and an unparsed header raw, with every peer text escaped."""

from __future__ import annotations

import html
import json
import re

from exporter.canary import CanaryStore
from exporter.canary.path import delivery_path
from exporter.canary.store import ArrivalReport
from exporter.relay import Snapshot
from exporter.web.statusjson import status_document
from exporter.web.statuspage import render_status_page

T0 = 1_800_000_000.0
HEADERS = [
    ("Received", "from x by mailbox.example with LMTP; no date <b>"),
    ("Received", "from relay.example by <script>x</script>.example with ESMTPS id 2; "
                 "Fri, 15 Jan 2027 08:00:01 +0000"),
    ("Received", "from probe.example by relay.example (using TLSv1.3 with cipher "
                 "TLS_AES_256_GCM_SHA384) with ESMTPSA id 1; Fri, 15 Jan 2027 08:00:05 +0000"),
    ("From", "canary@example.test"),
]


def _views() -> tuple[Snapshot, CanaryStore]:
    store = CanaryStore()
    store.configure([("relay", "box")], [("box", False)])
    path = delivery_path(HEADERS, sent_at=T0, internal_date=T0 + 9)
    store.arrived(ArrivalReport(
        relay="relay", mailbox="box", token="tok", folder="inbox", folder_name="INBOX",
        sent_at=T0, seen_at=T0 + 10, latency=10.0, receiver_delay=9.0, verdicts={},
        dmarc_aligned=False, path=path))
    snap = Snapshot(relays={}, reload_ok=True, reload_ok_at=0.0, warnings=(),
                    config_source="test", started_at=T0)
    return snap, store


def test_status_page_draws_the_path_escaped_with_skew_and_the_unparsed_header() -> None:
    snap, store = _views()
    page = render_status_page(snap, store.snapshot())
    assert "<script>" not in page and "&lt;script&gt;" in page
    text = html.unescape(re.sub(r"<[^>]*>", "", page))
    assert ("path (3 hops, not all TLS): 1 relay.example ESMTPSA +5.0s 🔒 → "
            "2 <script>x</script>.example ESMTPS +0.0s clock -4.0s 🔒 → "
            "3 mailbox.example LMTP +4.0s open") in text
    assert ("hop 3 unparsed (bad date 'no date <b>'): Received: from x by mailbox.example "
            "with LMTP; no date <b>") in text


def test_status_json_carries_the_path_with_raw_delays() -> None:
    snap, store = _views()
    doc = json.loads(json.dumps(status_document(snap, store.snapshot())))
    assert [e["relay"] for e in doc] == ["relay"]
    last = doc[0]["canaries"][0]["last"]
    path = last["path"]
    assert (path["hops"], path["encrypted"], path["skewed"], path["parse_failures"]) == (
        3, False, 1, 1)
    assert [(h["by"], h["with"], h["delay"], h["raw_delay"]) for h in path["path"]] == [
        ("relay.example", "ESMTPSA", 5.0, 5.0),
        ("<script>x</script>.example", "ESMTPS", 0.0, -4.0),
        ("mailbox.example", "LMTP", 4.0, 8.0),
    ]
    assert path["path"][0]["tls"] == {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    assert path["path"][2]["raw"] == "from x by mailbox.example with LMTP; no date <b>"
    assert path["total"] == 9.0 == last["receiver_delay"]
