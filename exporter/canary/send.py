"""Sending a canary through a relay over the same timed SMTP attempt as the probe: MAIL,
RCPT per recipient and DATA timed; a failure after the message was handed over is uncertain."""

from __future__ import annotations

import time

from exporter.canary.message import compose_canary, new_token
from exporter.canary.result import CanarySent
from exporter.config import CanaryConfig, RelayConfig
from exporter.model import Phase
from exporter.smtp import ProbeError, SMTPSession, TokenSource, attempt

__all__ = ["send_canary"]

async def send_canary(
    relay: RelayConfig,
    canary: CanaryConfig,
    *,
    instance: str,
    nameservers: tuple[tuple[str, int], ...] = (),
    dns_timeout: float | None = None,
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
                        dns_timeout=dns_timeout, token_source=token_source)
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
        cause=run.cause,
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
