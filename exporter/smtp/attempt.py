"""One SMTP attempt, written once for probes and canary sends: open, authenticate, the
caller's steps, QUIT, under the relay's timeout; every failure becomes a value, never raises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from exporter.config import AuthMechanism, RelayConfig
from exporter.diagnosis import Diagnosis, diagnose
from exporter.model import Phase, Reason, TLSInfo, TranscriptLine
from exporter.smtp.auth import authenticate
from exporter.smtp.errors import ProbeError
from exporter.smtp.oauth2 import TokenSource
from exporter.smtp.session import SMTPSession

__all__ = ["BACKSTOP", "Attempt", "Steps", "attempt"]

# Added to the relay's timeout as a last resort; every phase has its own deadline before it.
BACKSTOP = 2.0

Steps = Callable[[SMTPSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt did: its timings, TLS facts and transcript, and its failure if any."""

    failure: ProbeError | None
    duration: float
    phases: dict[Phase, float]
    tls: TLSInfo | None
    auth_mechanisms: tuple[str, ...]
    transcript: tuple[TranscriptLine, ...]
    last_reply: str | None
    handed_over: bool  # the message was on the wire: a later failure leaves delivery uncertain
    diagnosis: Diagnosis | None = None  # the failure's cause and hint (diagnosis/known_replies)

    @property
    def reason(self) -> Reason | None:
        return self.failure.reason if self.failure else None

    @property
    def hint(self) -> str | None:
        return self.diagnosis.hint if self.diagnosis else None

    @property
    def cause(self) -> str | None:
        """The known cause id of the failure, "" when its reply is not a known one."""
        return self.diagnosis.cause if self.diagnosis else None

    @property
    def detail(self) -> str | None:
        return self.failure.detail if self.failure else None

    @property
    def reply(self) -> str | None:
        """The reply that failed the attempt, else the last reply of the session; none when
        the failure says it had no reply (``""``: a token endpoint that did not answer)."""
        if self.failure is not None and self.failure.reply is not None:
            return self.failure.reply or None
        return self.last_reply

    @property
    def failed_phase(self) -> Phase | None:
        return self.failure.phase if self.failure else None


async def attempt(
    relay: RelayConfig,
    steps: Steps | None = None,
    *,
    what: str,
    nameservers: tuple[tuple[str, int], ...] = (),
    dns_timeout: float | None = None,
    token_source: TokenSource | None = None,
) -> Attempt:
    """Resolve, connect, greet, EHLO, TLS, AUTH (if configured), ``steps``, then QUIT, each
    timed; ``what`` names the attempt in a timeout's detail ("probe exceeded 10s")."""
    session = SMTPSession(relay, nameservers=nameservers, dns_timeout=dns_timeout)
    failure: ProbeError | None = None
    try:
        async with asyncio.timeout(relay.timeout + BACKSTOP):
            await session.open()
            if relay.auth.mechanism is not AuthMechanism.NONE:
                await authenticate(session, relay.auth, token_source=token_source)
            if steps is not None:
                await steps(session)
            await session.quit()
    except ProbeError as exc:
        failure = exc
    except TimeoutError:
        failure = ProbeError(
            session.phase,
            Reason.TIMEOUT,
            f"{what} exceeded {relay.timeout:g}s",
            reply=session.last_reply,
        )
    finally:
        session.close()
    diagnosis = None
    if failure is not None:
        diagnosis = diagnose(failure.reason, failure.phase, failure.reply, preset=relay.preset,
                             hint=failure.hint)
    return Attempt(
        failure=failure,
        duration=time.perf_counter() - session.t0,
        phases=dict(session.phases),
        tls=session.tls,
        auth_mechanisms=tuple(session.auth_mechanisms),
        transcript=tuple(session.transcript),
        last_reply=session.last_reply,
        handed_over=session.handed_over,
        diagnosis=diagnosis,
    )
