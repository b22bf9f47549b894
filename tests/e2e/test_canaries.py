"""Canaries through Postfix, signed by OpenDKIM, judged by policyd-spf, OpenDKIM and OpenDMARC
on a real MX hop, delivered over LMTP into Dovecot and read back over IMAP.

Points 5-8 of the end-to-end plan: the good domain passes and aligns in the inbox; each broken
domain fails the right verdict and makes the right alert condition hold; a canary filed to
Junk reads folder ``spam``; a mailbox on a host where STARTTLS is mandatory is read over
STARTTLS.
"""

from __future__ import annotations

import html
import imaplib
import re
import ssl

import pytest

from tests.e2e.bed import Bed, Exporter, Metrics
from tests.e2e.conftest import BROKEN

pytestmark = pytest.mark.e2e

# Canary relay -> (mailbox, folder, spf, dkim, dmarc, aligned), what the bed's MX decides.
EXPECTED = {
    "starttls-plain": ("main", "inbox", "pass", "pass", "pass", True),
    "implicit-xoauth2": ("strict", "inbox", "pass", "pass", "pass", True),
    "canary-spf-fail": ("main", "inbox", "fail", "pass", "pass", True),
    "canary-dkim-fail": ("main", "inbox", "pass", "fail", "pass", True),
    "canary-no-dmarc": ("main", "inbox", "pass", "pass", "none", True),
    "canary-dmarc-none": ("main", "inbox", "pass", "pass", "pass", True),
    "canary-spoof": ("main", "spam", "fail", "fail", "fail", False),
}
# The alerting rules in dashboards/alerts.yaml whose condition each relay's canary meets.
ALERTS = {
    "starttls-plain": set(),
    "implicit-xoauth2": set(),
    "canary-spf-fail": {"SMTPCanarySPFNotPass"},
    "canary-dkim-fail": {"SMTPCanaryDKIMNotPass"},
    "canary-no-dmarc": {"SMTPCanaryDMARCNotPass"},
    "canary-dmarc-none": set(),  # p=none passes; the DNS check warns about it (test_dns)
    "canary-spoof": {"SMTPCanarySPFNotPass", "SMTPCanaryDKIMNotPass", "SMTPCanaryDMARCNotPass",
                     "SMTPCanaryDMARCNotAligned", "SMTPCanaryInSpam"},
}
assert set(BROKEN) <= set(EXPECTED)


def alert_conditions(m: Metrics, relay: str, mailbox: str) -> set[str]:
    """The canary alerts of dashboards/alerts.yaml whose expression holds for this series,
    evaluated on one scrape (their ``for:`` durations aside)."""
    labels = {"relay": relay, "mailbox": mailbox}
    received = (m.get("smtp_canary_last_received_timestamp_seconds", **labels) or 0) > 0
    holding = set()
    for method, alert in (("spf", "SMTPCanarySPFNotPass"), ("dkim", "SMTPCanaryDKIMNotPass"),
                          ("dmarc", "SMTPCanaryDMARCNotPass")):
        if received and m.get("smtp_canary_auth_result", method=method, result="pass",
                              **labels) == 0:
            holding.add(alert)
    if received and m.get("smtp_canary_dmarc_aligned", **labels) == 0:
        holding.add("SMTPCanaryDMARCNotAligned")
    folders = m.all("smtp_canary_last_folder_info", **labels)
    if any(dict(key)["folder"].startswith("spam") and value == 1
           for key, value in folders.items()):
        holding.add("SMTPCanaryInSpam")
    return holding


@pytest.fixture(scope="module")
def received(exporter: Exporter) -> Metrics:
    """A scrape taken once every canary relay's first canary was read back."""

    def all_received(m: Metrics) -> bool:
        return all(
            sum(m.all("smtp_canary_received_total", relay=relay, mailbox=box).values()) >= 1
            for relay, (box, *_rest) in EXPECTED.items()
        )

    return exporter.wait_for("a canary from every canary relay", all_received, timeout=90)


@pytest.mark.parametrize("relay", list(EXPECTED))
def test_canary_verdicts_and_folder(received: Metrics, relay: str) -> None:
    box, folder, spf, dkim, dmarc, aligned = EXPECTED[relay]
    labels = {"relay": relay, "mailbox": box}
    m = received
    assert (m.get("smtp_canary_received_total", folder=folder, **labels) or 0) >= 1
    assert m.get("smtp_canary_last_folder_info", folder=folder, **labels) == 1
    for method, result in (("spf", spf), ("dkim", dkim), ("dmarc", dmarc)):
        assert m.get("smtp_canary_auth_result", method=method, result=result, **labels) == 1, (
            method, {dict(k)["result"]: v for k, v in
                     m.all("smtp_canary_auth_result", method=method, **labels).items()})
    assert m.get("smtp_canary_dmarc_aligned", **labels) == (1 if aligned else 0)
    assert m.get("smtp_canary_lost_total", **labels) == 0
    delivery = m.get("smtp_canary_last_delivery_duration_seconds", **labels)
    assert delivery is not None and 0 < delivery < 30
    assert m.get("smtp_canary_send_failures_total", relay=relay, reason="auth_failed") == 0


@pytest.mark.parametrize("relay", list(EXPECTED))
def test_alert_conditions(received: Metrics, relay: str) -> None:
    box = EXPECTED[relay][0]
    assert alert_conditions(received, relay, box) == ALERTS[relay]


def test_status_shows_the_trusted_header_the_mx_wrote(exporter: Exporter,
                                                      received: Metrics) -> None:
    """The status page shows the Authentication-Results header it trusted, as the MX wrote it
    (OpenDMARC's, the newest, on top)."""
    page = html.unescape(exporter.page())
    assert "mx.example.test; dmarc=fail (p=reject dis=none) header.from=spoof.test" in page
    assert "mx.example.test; dmarc=pass (p=reject dis=none) header.from=example.test" in page


def test_strict_host_refuses_plaintext_login(bed: Bed) -> None:
    """The bed's 127.0.0.2 listener is the check: LOGIN without STARTTLS is refused there."""
    with imaplib.IMAP4(bed["TB_STRICT_HOST"], bed.port("TB_STRICT_IMAP_PORT"), timeout=10) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(bed["TB_STRICT_USER"], bed["TB_PASSWORD"])
    with imaplib.IMAP4(bed["TB_STRICT_HOST"], bed.port("TB_STRICT_IMAP_PORT"), timeout=10) as imap:
        imap.starttls(ssl.create_default_context(cafile=bed.ca_file))
        assert imap.login(bed["TB_STRICT_USER"], bed["TB_PASSWORD"])[0] == "OK"


def test_mailbox_on_strict_host_is_read_over_starttls(bed: Bed, received: Metrics) -> None:
    assert received.get("smtp_mailbox_up", mailbox="strict") == 1
    assert (received.get("smtp_canary_received_total", relay="implicit-xoauth2",
                         mailbox="strict", folder="inbox") or 0) >= 1
    # Dovecot logged the exporter's logins on 127.0.0.2, each over TLS.
    logins = [line for line in bed.log("dovecot.log", 2000).splitlines()
              if re.search(r"imap-login: Info: Login: user=<strict@example\.test>", line)
              and f"lip={bed['TB_STRICT_HOST']}" in line]
    assert logins, bed.log("dovecot.log")
    assert all(", TLS" in line for line in logins), logins
