"""Canary messages: a unique token per send that names its instance, composed as well-formed
RFC 5322 mail, and found again in a received header."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

__all__ = [
    "CANARY_HEADER",
    "compose_canary",
    "instance_tag",
    "new_token",
    "search_prefix",
    "token_from_header",
]

CANARY_HEADER = "X-Smtp-Canary"
_PREFIX = "smtpcanary"
_UNSAFE = re.compile(r"[^a-z0-9.-]+")
_TOKEN_RE = re.compile(r"\b(smtpcanary_[a-z0-9.-]+_[0-9a-f]{20})\b")


def instance_tag(instance: str) -> str:
    """The instance name as it appears in tokens: lower-case letters, digits, dots, hyphens."""
    return _UNSAFE.sub("-", instance.lower()).strip("-.") or "default"


def search_prefix(instance: str) -> str:
    """What an IMAP HEADER search looks for to find this instance's canaries and no other's:
    the ``_`` after the tag cannot occur inside a tag, so ``eu`` never matches ``eu-west``."""
    return f"{_PREFIX}_{instance_tag(instance)}_"


def new_token(instance: str) -> str:
    return search_prefix(instance) + secrets.token_hex(10)


def token_from_header(value: str) -> str | None:
    match = _TOKEN_RE.search(value.lower())
    return match.group(1) if match else None


def compose_canary(
    *, token: str, relay: str, sender: str, recipients: list[str], now: float
) -> bytes:
    """A well-formed message: Date, Message-ID, From, To, Subject, the token in three places,
    and the headers that keep vacation responders quiet."""
    msg = EmailMessage()
    domain = sender.rpartition("@")[2] or "localhost"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"smtp-canary {token} via {relay}"
    msg["Date"] = formatdate(now, localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{token}@{domain}>"
    sent = format_datetime(datetime.fromtimestamp(now, UTC))
    msg[CANARY_HEADER] = f"{token}; relay={relay}; sent={sent}"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Precedence"] = "bulk"
    msg.set_content(
        "This is a canary message from smtp-canary-exporter.\n"
        "It measures whether mail sent through the relay "
        f"{relay} arrives, how fast, and how the receiver judges it.\n"
        "It is deleted automatically once seen. Token: " + token + "\n"
    )
    return msg.as_bytes()
