"""Postfix stopped mid-run (point 9 of the plan): probes fail with ``connect_refused``, the
canary in flight goes lost after its timeout, and everything recovers after the restart.

To have a canary in flight when Postfix stops, the MX's DMARC milter is stopped first: the
MX then tempfails the hop (milter_default_action = tempfail), so the submission accepts the
canary and Postfix keeps it queued. Restarted, Postfix delivers it: the lost canary turns up
late. (The DMARC milter, not the DKIM verifier: OpenDKIM resolves through libunbound, whose
configuration parser is not thread-safe, and a restarted OpenDKIM met by Postfix's whole
deferred queue at once can fail its lookups, and so tempfail, for longer than the test
waits.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bed import Bed, Metrics, running_exporter
from tests.e2e.conftest import mailbox, relay

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive]

CANARY_TIMEOUT = 15.0


def _config(bed: Bed, state_dir: Path) -> dict[str, Any]:
    user = bed["TB_USER"]
    return {
        "instance": "e2e-outage",
        "state_dir": str(state_dir),
        "dns": {"nameservers": [bed["TB_DNS"]]},
        "defaults": {"interval": "2s", "timeout": "1500ms", "ca_file": bed.ca_file},
        "mailboxes": [mailbox("main", bed["TB_HOST"], bed.port("TB_IMAP_PORT"), "starttls",
                              user, bed)],
        "relays": [relay(
            "outage", bed, port="TB_SUBMISSION_PORT", tls="starttls",
            canary={"from": user, "to": [{"address": user, "mailbox": "main"}],
                    "interval": "10s", "timeout": f"{CANARY_TIMEOUT:g}s"},
        )],
    }


def _count(m: Metrics, name: str, **labels: str) -> float:
    return sum(m.all(name, **labels).values())


def test_postfix_stopped_mid_run(bed: Bed, exporter_env: dict[str, str],
                                 tmp_path: Path) -> None:
    labels = {"relay": "outage", "mailbox": "main"}
    restored = False
    try:
        with running_exporter(tmp_path, _config(bed, tmp_path / "state"), exporter_env) as ex:
            m = ex.wait_for("a first canary and a good probe", lambda m: (
                _count(m, "smtp_canary_received_total", **labels) >= 1
                and m.get("smtp_probe_success", relay="outage") == 1), timeout=40)
            # Hold delivery at the MX, then wait for a canary sent after that: it is accepted
            # by the submission and stays queued, in flight.
            bed.stop_daemon("opendmarc")
            sent = _count(ex.scrape(), "smtp_canary_sent_total", relay="outage")
            m = ex.wait_for("a canary accepted while the MX tempfails", lambda m: (
                _count(m, "smtp_canary_sent_total", relay="outage") > sent
                and (m.get("smtp_canary_in_flight", **labels) or 0) >= 1), timeout=30)
            received = _count(m, "smtp_canary_received_total", **labels)
            lost = _count(m, "smtp_canary_lost_total", **labels)

            bed.stop_daemon("postfix")
            m = ex.wait_for("the relay to fail with connect_refused", lambda m: (
                m.get("smtp_probe_last_failure_info", relay="outage",
                      reason="connect_refused") == 1), timeout=20)
            assert m.get("smtp_probe_success", relay="outage") == 0

            m = ex.wait_for("the canary in flight to count as lost", lambda m: (
                _count(m, "smtp_canary_lost_total", **labels) > lost),
                timeout=CANARY_TIMEOUT + 20)
            assert _count(m, "smtp_canary_received_total", **labels) == received
            # New canaries are not sent into the void: their sends fail, named.
            m = ex.wait_for("a canary send to fail with connect_refused", lambda m: (
                (m.get("smtp_canary_send_failures_total", relay="outage",
                       reason="connect_refused") or 0) >= 1), timeout=20)

            bed.start_daemon("opendmarc", "postfix")
            restored = True
            m = ex.wait_for("the relay to recover", lambda m: (
                m.get("smtp_probe_success", relay="outage") == 1), timeout=20)
            ex.wait_for("a canary received after the restart", lambda m: (
                _count(m, "smtp_canary_received_total", **labels) > received), timeout=40)
            # The queued canary is delivered on Postfix's next queue run: late, not received.
            m = ex.wait_for("the lost canary to arrive late", lambda m: (
                (m.get("smtp_canary_late_total", **labels) or 0) >= 1), timeout=60)
            assert m.get("smtp_mailbox_up", mailbox="main") == 1
    finally:
        if not restored:  # leave the bed whole
            bed.start_daemon("opendmarc", "postfix")
