"""Canary messages and tokens: well-formed mail that names its instance and no other."""

from __future__ import annotations

import email
import email.policy
import email.utils

from exporter.canary.message import (
    CANARY_HEADER,
    compose_canary,
    new_token,
    search_prefix,
    token_from_header,
)


def test_canary_is_well_formed_rfc5322() -> None:
    """Date, Message-ID, From, To, Subject are present and parse; the token is in Message-ID,
    Subject and its own header; auto-responders are told to stay quiet."""
    token = new_token("eu-west-1a")
    raw = compose_canary(token=token, relay="sendgrid", sender="canary@example.com",
                         recipients=["a@example.net", "b@example.org"], now=1_800_000_000)
    msg = email.message_from_bytes(raw, policy=email.policy.strict)
    assert msg["From"] == "canary@example.com"
    assert msg["To"] == "a@example.net, b@example.org"
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == 1_800_000_000
    assert msg["Message-ID"] == f"<{token}@example.com>"
    assert token in msg["Subject"]
    assert token_from_header(msg[CANARY_HEADER]) == token
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert b"\r\n" in raw or b"\n" in raw
    assert all(len(line) <= 998 for line in raw.splitlines())


def test_tokens_are_unique_and_carry_the_instance() -> None:
    """Every token is new, and starts with its instance's search prefix."""
    tokens = {new_token("eu") for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(t.startswith("smtpcanary_eu_") for t in tokens)


def test_one_instance_never_matches_another() -> None:
    """An instance's search prefix is not found in a longer instance's tokens (eu vs eu-west),
    and odd instance names are made safe."""
    assert search_prefix("eu") not in new_token("eu-west")
    assert search_prefix("eu-west") not in new_token("eu")
    assert search_prefix("EU West/1") == "smtpcanary_eu-west-1_"


def test_token_from_header_ignores_other_text() -> None:
    """The token is read from a header with other fields around it; junk gives None."""
    token = new_token("a")
    assert token_from_header(f"{token}; relay=x; sent=Mon, 1 Jan 2026") == token
    assert token_from_header("nothing here") is None
