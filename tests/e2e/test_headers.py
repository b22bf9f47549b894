"""The parser fixtures in tests/data/headers/testbed-authentication-results.json are what the
bed's MX writes today: mail from each domain, sent through submission and read back over IMAP,
carries the same Authentication-Results headers (the per-message DKIM header.b aside)."""

from __future__ import annotations

import email
import email.utils
import imaplib
import json
import re
import secrets
import smtplib
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bed import Bed

pytestmark = pytest.mark.e2e

FIXTURES = (Path(__file__).resolve().parents[1] / "data" / "headers"
            / "testbed-authentication-results.json")
ITEMS: list[dict[str, Any]] = json.loads(FIXTURES.read_text(encoding="utf-8"))


def _normal(header: str) -> str:
    """Unfolded, with the signature-specific header.b value masked."""
    text = re.sub(r"\r?\n[ \t]+", " ", header)
    return re.sub(r"header\.b=[^;\s]+", "header.b=*", text)


def _received_headers(bed: Bed, domain: str, tag: str) -> list[str]:
    ctx = ssl.create_default_context(cafile=bed.ca_file)
    message_id = f"<fixture.{tag}.{domain}@e2e>"
    msg = (f"From: canary@{domain}\r\nTo: {bed['TB_USER']}\r\nSubject: fixture {domain}\r\n"
           f"Message-ID: {message_id}\r\nDate: {email.utils.formatdate()}\r\n\r\nfixture\r\n")
    with smtplib.SMTP(bed["TB_HOST"], bed.port("TB_SUBMISSION_PORT"), timeout=10) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(bed["TB_USER"], bed["TB_PASSWORD"])
        smtp.sendmail(f"canary@{domain}", [bed["TB_USER"]], msg)
    with imaplib.IMAP4_SSL(bed["TB_HOST"], bed.port("TB_IMAPS_PORT"), ssl_context=ctx) as imap:
        imap.login(bed["TB_USER"], bed["TB_PASSWORD"])
        imap.select("INBOX")
        # UIDs, not sequence numbers: the exporter expunges its canaries from this mailbox
        # meanwhile, which renumbers messages and adds untagged responses to ours.
        deadline = time.monotonic() + 20
        while True:
            _typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
            if data[0]:
                break
            assert time.monotonic() < deadline, f"{message_id} not delivered\n{bed.logs()}"
            time.sleep(0.2)
        uid = data[0].split()[0]
        _typ, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
        imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        imap.expunge()
    raw = next(part[1] for part in fetched
               if isinstance(part, tuple) and b"BODY[HEADER]" in part[0]).decode()
    headers = email.message_from_string(raw).get_all("Authentication-Results") or []
    return [f"Authentication-Results: {value}" for value in headers]


@pytest.mark.parametrize("item", ITEMS, ids=[item["from_domain"] for item in ITEMS])
def test_bed_writes_the_fixture_headers(bed: Bed, item: dict[str, Any]) -> None:
    got = _received_headers(bed, item["from_domain"], secrets.token_hex(4))
    assert [_normal(h) for h in got] == [_normal(h) for h in item["headers"]]
