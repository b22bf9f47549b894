"""One loop per relay, each on its own interval with jitter, under a global concurrency limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from exporter.config import Config, RelayConfig
from exporter.model import HINTS, Reason
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult
from exporter.relay.store import ResultStore
from exporter.smtp import RefreshingTokenSource, TokenSource, token_source_for
from exporter.tasks import (
    FIRST_SPREAD,
    LOOP_CLOCK,
    Clock,
    Limiter,
    cancel_and_wait,
    run_every,
    stop_if_cancelled,
)

__all__ = ["ProbeFn", "Scheduler"]

log = logging.getLogger(__name__)

ProbeFn = Callable[..., Awaitable[RelayResult]]
# Many relays spread their first probes wider, so start-up asks at most this many probe
# starts a second (1,000 relays: 50 s instead of 10 s); a burst fills max_concurrent_probes,
# and probes waiting for a slot start late ever after, as the schedule keeps its shape.
START_RATE = 20.0


@dataclass
class _Job:
    relay: RelayConfig
    task: asyncio.Task[None]
    tokens: TokenSource | None


class Scheduler:
    """Keeps exactly one probe loop per configured relay; ``apply`` reconciles on reload."""

    def __init__(
        self, store: ResultStore, *, probe: ProbeFn = probe_relay, clock: Clock = LOOP_CLOCK
    ) -> None:
        self._store = store
        self._probe = probe
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        # One limiter for the scheduler's life: a reload resizes it, so probes still running
        # under the old limit count against the new one.
        self._limiter = Limiter(64)
        self._nameservers: tuple[tuple[str, int], ...] = ()
        self._dns_timeout: float | None = None
        self._first_spread = FIRST_SPREAD

    @property
    def limiter(self) -> Limiter:
        """The max_concurrent_probes limit, which /probe's probes share with the schedule."""
        return self._limiter

    @property
    def relays(self) -> list[str]:
        return sorted(self._jobs)

    def apply(self, config: Config) -> None:
        """Start loops for new or changed relays, stop those removed; unchanged ones keep time."""
        if config.max_concurrent_probes != self._limiter.limit:
            self._limiter.resize(config.max_concurrent_probes)
        restart_all = config.dns.nameservers != self._nameservers
        self._nameservers = config.dns.nameservers
        self._dns_timeout = config.dns.timeout  # read at each probe: no restart needed
        wanted = {r.name: r for r in config.relays}
        self._first_spread = max(FIRST_SPREAD, len(wanted) / START_RATE)
        for name in list(self._jobs):
            job = self._jobs[name]
            if name not in wanted or wanted[name] != job.relay or restart_all:
                job.task.cancel()
                del self._jobs[name]
        for name, relay in wanted.items():
            if name not in self._jobs:
                tokens = token_source_for(relay.auth)
                task = asyncio.create_task(self._loop(relay, tokens), name=f"probe:{name}")
                self._jobs[name] = _Job(relay, task, tokens)

    async def stop(self) -> None:
        tasks = [job.task for job in self._jobs.values()]
        self._jobs.clear()
        await cancel_and_wait(tasks)

    async def _loop(self, relay: RelayConfig, tokens: TokenSource | None) -> None:
        previous: RelayResult | None = None

        async def once() -> None:
            nonlocal previous
            async with self._limiter:
                result = await self._run(relay, tokens)
            stop_if_cancelled()  # removed or changed by a reload while it ran
            self._store.record(result)
            _log_result(result, previous)
            previous = result

        await run_every(relay.interval, once, first_spread=self._first_spread, what="probe loop",
                        clock=self._clock)

    async def _run(self, relay: RelayConfig, tokens: TokenSource | None) -> RelayResult:
        started = time.time()
        try:
            result = await self._probe(relay, nameservers=self._nameservers,
                                       dns_timeout=self._dns_timeout, token_source=tokens)
        except Exception as exc:  # a bug in the exporter, not a failure of the relay
            log.exception("probe crashed", extra={"relay": relay.name})
            result = RelayResult(
                relay=relay.name,
                success=False,
                started_at=started,
                duration=time.time() - started,
                reason=Reason.PROTOCOL_ERROR,
                hint=HINTS[Reason.PROTOCOL_ERROR],
                detail=f"exporter error: {type(exc).__name__}",
            )
        if isinstance(tokens, RefreshingTokenSource):
            self._store.record_token(
                relay.name,
                expires_at=tokens.expires_at,
                failures=tokens.refresh_failures,
                error=tokens.last_error,
            )
        return result


def _log_result(result: RelayResult, previous: RelayResult | None) -> None:
    fields: dict[str, object] = {"relay": result.relay, "duration": round(result.duration, 4)}
    if result.success:
        if previous is not None and not previous.success:
            log.info("relay recovered", extra=fields)
        else:
            log.debug("probe succeeded", extra=fields)
        return
    fields.update(
        reason=result.reason.value if result.reason else None,
        phase=result.failed_phase.value if result.failed_phase else None,
        hint=result.hint,
        cause=result.cause,
        detail=result.detail,
        reply=result.reply,
    )
    log.warning("probe failed", extra=fields)
