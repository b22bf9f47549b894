"""A canary's delivery path through the bed: Postfix submission -> content_filter to the Postfix
MX -> LMTP over a unix socket into Dovecot, read back from its Received headers."""

from __future__ import annotations

import html
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bed import Bed, Metrics, running_exporter
from tests.e2e.conftest import canary, mailbox, relay

pytestmark = pytest.mark.e2e

LABELS = {"relay": "path-canary", "mailbox": "main"}
# What the bed writes, relay first: Postfix names only the protocol (smtpd_tls_received_header
# is off), and Dovecot's LMTP over the unix socket is plaintext.
BED_PATH = [
    ("probe.example.test", "mail.example.test", "ESMTPSA", True),
    ("mail.example.test", "mx.example.test", "ESMTPS", True),
    ("mail.example.test", "imap.example.test", "LMTP", False),
]


def test_path_through_the_bed_has_three_hops_adding_up_and_an_open_lmtp_hop(
        bed: Bed, exporter_env: dict[str, str], tmp_path: Path) -> None:
    """The canary shows 3 hops, relay first; their delays add up to the time from the relay's
    accept to Dovecot storing it, within the watcher's detection delay of the delivery time;
    the submission and MX hops are TLS, the LMTP hop is not, so the path is not encrypted."""
    user = bed["TB_USER"]
    doc: dict[str, Any] = {
        "instance": "e2e-path",
        "state_dir": str(tmp_path / "state"),
        "dns": {"nameservers": [bed["TB_DNS"]], "timeout": "3s"},
        "defaults": {"interval": "30s", "timeout": "10s", "ca_file": bed.ca_file,
                     "ehlo_name": "probe.example.test"},
        "mailboxes": [mailbox("main", bed["TB_HOST"], bed.port("TB_IMAPS_PORT"), "implicit",
                              user, bed)],
        "relays": [relay("path-canary", bed, port="TB_SUBMISSION_PORT", tls="starttls",
                         canary=canary(user, user, "main"))],
    }
    with running_exporter(tmp_path, doc, exporter_env) as exporter:
        m = exporter.wait_for("a canary's path",
                              lambda m: m.get("smtp_canary_hops", **LABELS) is not None,
                              timeout=90)
        with urllib.request.urlopen(exporter.url + "/status.json", timeout=10) as response:
            status = json.loads(response.read().decode())
        page = html.unescape(re.sub(r"<[^>]*>", "", exporter.page()))
    path = next(e for e in status if e["relay"] == "path-canary")["canaries"][0]["last"]["path"]
    print("\npath from the bed:\n" + json.dumps(path, indent=1))

    assert [(h["from"], h["by"], h["with"], h["encrypted"]) for h in path["path"]] == BED_PATH
    line = re.search(r"path \(3 hops, not all TLS\):.*? open", page)
    assert line is not None, page
    print(line.group())
    assert re.fullmatch(r"path \(3 hops, not all TLS\): 1 mail\.example\.test ESMTPSA \+[\d.]+s 🔒"
                        r" → 2 mx\.example\.test ESMTPS \+[\d.]+s 🔒"
                        r" → 3 imap\.example\.test LMTP \+[\d.]+s open", line.group())
    assert m.get("smtp_canary_hops", **LABELS) == 3
    assert m.get("smtp_canary_path_encrypted", **LABELS) == 0
    assert m.get("smtp_canary_hop_clock_skew_total", **LABELS) == 0
    assert m.get("smtp_canary_hop_parse_failures_total", **LABELS) == 0
    delays = _hop_delays(m)
    assert sorted(delays) == ["1", "2", "3"]
    total = sum(delays.values())
    receiver = m.get("smtp_canary_last_receiver_delay_seconds", **LABELS)
    delivery = m.get("smtp_canary_last_delivery_duration_seconds", **LABELS)
    assert receiver is not None and delivery is not None
    assert total == pytest.approx(receiver, abs=1e-6)
    # INTERNALDATE has whole seconds: the sum may run up to 1 s behind the watcher's view;
    # the watcher (IDLE, 1 s poll) sees it within about a second more.
    assert delivery - 2.0 <= total <= delivery + 1.0, (delays, delivery)
    assert [h["delay"] for h in path["path"]] == pytest.approx(
        [delays[str(i)] for i in (1, 2, 3)], abs=1e-3)


def _hop_delays(m: Metrics) -> dict[str, float]:
    return {dict(labels)["hop"]: seconds
            for labels, seconds in m.all("smtp_canary_hop_delay_seconds", **LABELS).items()}
