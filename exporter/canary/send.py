"""Canary messages: a unique token per send, composed as RFC 5322 mail, sent through the relay
over the same timed session as the probe."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

from exporter.canary.result import CanarySent
from exporter.config import CanaryConfig, RelayConfig
from exporter.model import Phase
from exporter.smtp import ProbeError, SMTPSession, TokenSource, attempt

__all__ = [
    "CANARY_HEADER",
    "compose_canary",
    "instance_tag",
    "new_token",
    "search_prefix",
    "send_canary",
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


async def send_canary(
    relay: RelayConfig,
    canary: CanaryConfig,
    *,
    instance: str,
    nameservers: tuple[tuple[str, int], ...] = (),
    token_source: TokenSource | None = None,
    token: str | None = None,
) -> CanarySent:
    """Send one canary to every configured recipient; phases mail, rcpt and data are timed."""
    token = token or new_token(instance)
    started_at = time.time()
    accepted: list[str] = []
    sent_at: float | None = None

    async def steps(session: SMTPSession) -> None:
        nonlocal accepted, sent_at
        accepted = await _envelope(session, canary)
        message = compose_canary(token=token, relay=relay.name, sender=canary.sender,
                                 recipients=accepted, now=time.time())
        await session.data(message)
        sent_at = time.time()

    run = await attempt(relay, steps, what="send", nameservers=nameservers,
                        token_source=token_source)
    uncertain = run.failure is not None and run.handed_over
    if uncertain:
        sent_at = time.time()
    return CanarySent(
        relay=relay.name,
        token=token,
        success=run.failure is None,
        started_at=started_at,
        sent_at=sent_at,
        uncertain=uncertain,
        accepted=tuple(accepted) if (run.failure is None or uncertain) else (),
        phases=run.phases,
        reason=run.reason,
        hint=run.hint,
        detail=run.detail,
        reply=run.reply,
        failed_phase=run.failed_phase,
        transcript=run.transcript,
    )


async def _envelope(session: SMTPSession, canary: CanaryConfig) -> list[str]:
    """MAIL FROM, then RCPT TO per recipient; rejected recipients are dropped, all rejected
    fails with the last refusal."""
    sender = canary.sender.encode("utf-8")
    await session.timed(Phase.MAIL, b"MAIL", b"FROM:<" + sender + b">", ok=(250,),
                        what="MAIL FROM")
    accepted: list[str] = []
    last: ProbeError | None = None
    start = time.perf_counter()
    for target in canary.to:
        session.phase = Phase.RCPT
        resp, _ = await session.command(b"RCPT", b"TO:<" + target.address.encode("utf-8") + b">")
        try:
            session.expect(resp, 250, 251, what=f"RCPT TO {target.address}")
        except ProbeError as exc:
            last = exc
            continue
        accepted.append(target.address)
    session.phases[Phase.RCPT] = time.perf_counter() - start
    if not accepted:
        assert last is not None
        raise last
    return accepted
