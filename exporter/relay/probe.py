"""The relay probe: one timed SMTP handshake per call, returning a RelayResult, never raising."""

from __future__ import annotations

import asyncio
import time

from exporter.config import AuthMechanism, RelayConfig
from exporter.model import HINTS, Phase, Reason
from exporter.relay.result import RelayResult
from exporter.smtp import ProbeError, SMTPSession, TokenSource, authenticate

__all__ = ["probe_relay"]

# Added to the relay's timeout as a last resort; every phase has its own deadline before it.
BACKSTOP = 2.0


async def probe_relay(
    relay: RelayConfig,
    *,
    nameservers: tuple[tuple[str, int], ...] = (),
    token_source: TokenSource | None = None,
) -> RelayResult:
    """Resolve, connect, greet, EHLO, TLS, AUTH, optionally MAIL/RCPT, and QUIT, each timed."""
    started_at = time.time()
    session = SMTPSession(relay, nameservers=nameservers)
    failure: ProbeError | None = None
    try:
        async with asyncio.timeout(relay.timeout + BACKSTOP):
            await session.open()
            if relay.auth.mechanism is not AuthMechanism.NONE:
                await authenticate(session, relay.auth, token_source=token_source)
            if relay.rcpt_check:
                await _rcpt_check(session, relay)
            await session.quit()
    except ProbeError as exc:
        failure = exc
    except TimeoutError:
        failure = ProbeError(
            session.phase,
            Reason.TIMEOUT,
            f"probe exceeded {relay.timeout:g}s",
            reply=session.last_reply,
        )
    finally:
        session.close()
    duration = time.perf_counter() - session.t0
    return _result(relay, session, failure, started_at=started_at, duration=duration)


async def _rcpt_check(session: SMTPSession, relay: RelayConfig) -> None:
    sender = relay.mail_from.encode("utf-8")
    await session.timed(Phase.MAIL, b"MAIL", b"FROM:<" + sender + b">", ok=(250,), what="MAIL FROM")
    rcpt = (relay.rcpt_check or "").encode("utf-8")
    await session.timed(Phase.RCPT, b"RCPT", b"TO:<" + rcpt + b">", ok=(250, 251), what="RCPT TO")
    resp, _ = await session.command(b"RSET")
    session.expect(resp, 250, what="RSET")


def _result(
    relay: RelayConfig,
    session: SMTPSession,
    failure: ProbeError | None,
    *,
    started_at: float,
    duration: float,
) -> RelayResult:
    observed = failure.reason if failure else None
    reason: Reason | None = observed
    hint = (failure.hint or HINTS[failure.reason]) if failure else None
    detail = failure.detail if failure else None
    if relay.expect is not None:
        if observed is relay.expect:
            reason, hint = None, f"expected failure seen: {relay.expect.value}"
        elif observed is None:
            reason = Reason.EXPECTATION_FAILED
            hint = HINTS[reason]
            detail = f"expected {relay.expect.value}, but the probe succeeded"
        else:
            hint = f"{hint} (this negative check expects {relay.expect.value})"
    return RelayResult(
        relay=relay.name,
        success=reason is None,
        started_at=started_at,
        duration=duration,
        phases=dict(session.phases),
        reason=reason,
        hint=hint,
        detail=detail,
        reply=failure.reply if failure and failure.reply else session.last_reply,
        failed_phase=failure.phase if failure else None,
        expected=relay.expect,
        observed=observed,
        tls=session.tls,
        auth_mechanisms=tuple(session.auth_mechanisms),
        transcript=tuple(session.transcript),
    )
