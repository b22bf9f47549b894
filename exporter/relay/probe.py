"""The relay probe: one timed SMTP handshake per call, returning a RelayResult, never raising."""

from __future__ import annotations

import time

from exporter.config import RelayConfig
from exporter.model import HINTS, Phase, Reason
from exporter.relay.result import RelayResult
from exporter.smtp import Attempt, SMTPSession, TokenSource, attempt

__all__ = ["probe_relay"]

async def probe_relay(
    relay: RelayConfig,
    *,
    nameservers: tuple[tuple[str, int], ...] = (),
    dns_timeout: float | None = None,
    token_source: TokenSource | None = None,
) -> RelayResult:
    """Resolve, connect, greet, EHLO, TLS, AUTH, optionally MAIL/RCPT, and QUIT, each timed;
    ``dns_timeout`` (dns.timeout) bounds the host lookup, else the probe's timeout does."""
    started_at = time.time()

    async def steps(session: SMTPSession) -> None:
        if relay.rcpt_check:
            await _rcpt_check(session, relay)

    run = await attempt(relay, steps, what="probe", nameservers=nameservers,
                        dns_timeout=dns_timeout, token_source=token_source)
    return _result(relay, run, started_at=started_at)


async def _rcpt_check(session: SMTPSession, relay: RelayConfig) -> None:
    sender = relay.mail_from.encode("utf-8")
    await session.timed(Phase.MAIL, b"MAIL", b"FROM:<" + sender + b">", ok=(250,), what="MAIL FROM")
    rcpt = (relay.rcpt_check or "").encode("utf-8")
    await session.timed(Phase.RCPT, b"RCPT", b"TO:<" + rcpt + b">", ok=(250, 251), what="RCPT TO")
    resp, _ = await session.command(b"RSET")
    session.expect(resp, 250, what="RSET")


def _result(relay: RelayConfig, run: Attempt, *, started_at: float) -> RelayResult:
    """The relay's result: a negative check (``expect``) succeeds on the failure it expects."""
    observed = run.reason
    reason, hint, detail, cause = observed, run.hint, run.detail, run.cause
    if relay.expect is not None:
        if observed is relay.expect:
            reason, hint, cause = None, f"expected failure seen: {relay.expect.value}", None
        elif observed is None:
            reason, cause = Reason.EXPECTATION_FAILED, ""
            hint = HINTS[reason]
            detail = f"expected {relay.expect.value}, but the probe succeeded"
        else:
            hint = f"{hint} (this negative check expects {relay.expect.value})"
    return RelayResult(
        relay=relay.name,
        success=reason is None,
        started_at=started_at,
        duration=run.duration,
        phases=run.phases,
        reason=reason,
        hint=hint,
        cause=cause,
        detail=detail,
        reply=run.reply,
        failed_phase=run.failed_phase,
        expected=relay.expect,
        observed=observed,
        tls=run.tls,
        auth_mechanisms=run.auth_mechanisms,
        transcript=run.transcript,
    )
