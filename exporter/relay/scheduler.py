"""One loop per relay, each on its own interval at a fixed offset from a hash of its name, under
a global concurrency limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from exporter.config import Config, RelayConfig
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult, crashed_result
from exporter.relay.store import ResultStore
from exporter.smtp import RefreshingTokenSource, TokenSource, token_source_for
from exporter.tasks import (
    LOOP_CLOCK,
    Clock,
    LagRecorder,
    Limiter,
    cancel_and_wait,
    first_window,
    run_every,
    stop_if_cancelled,
)

__all__ = ["FIRST_PROBES_WITHIN", "ProbeFn", "Scheduler"]

log = logging.getLogger(__name__)

ProbeFn = Callable[..., Awaitable[RelayResult]]
# First probes spread over the relay's first interval, or over this many seconds if that is
# shorter (wider with many relays): a relay on a 10-minute interval has its first result
# within a minute, before an alert's `for: 5m` could take "not probed yet" for "down".
FIRST_PROBES_WITHIN = 60.0


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
        # How late probes start (a slot of max_concurrent_probes included): smtp_exporter_
        # schedule_lag_seconds.
        self.lag = LagRecorder()
        self._window = FIRST_PROBES_WITHIN
        self._unprobed: set[str] = set()
        self._probed_once: set[str] = set()
        self.first_round = asyncio.Event()  # set once every relay has had its first probe

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
        self._window = first_window(len(wanted), at_least=FIRST_PROBES_WITHIN)
        # New loops share this start, so their first probes spread over the interval from
        # now, however long the rest of the start-up (or reload) takes to hand them the loop.
        epoch = self._clock.now()
        for name in list(self._jobs):
            job = self._jobs[name]
            if name not in wanted or wanted[name] != job.relay or restart_all:
                job.task.cancel()
                del self._jobs[name]
        for name, relay in wanted.items():
            if name not in self._jobs:
                tokens = token_source_for(relay.auth)
                task = asyncio.create_task(self._loop(relay, tokens, epoch),
                                           name=f"probe:{name}")
                self._jobs[name] = _Job(relay, task, tokens)
        if not self.first_round.is_set():
            self._unprobed = set(wanted) - self._probed_once
            self._first_round_check()

    def _first_round_check(self) -> None:
        if not self._unprobed:
            self.first_round.set()

    async def stop(self) -> None:
        tasks = [job.task for job in self._jobs.values()]
        self._jobs.clear()
        await cancel_and_wait(tasks)

    async def _loop(self, relay: RelayConfig, tokens: TokenSource | None,
                    epoch: float) -> None:
        previous: RelayResult | None = None

        async def once(due: float) -> None:
            nonlocal previous
            async with self._limiter:
                self.lag.late(due, self._clock.now())
                result = await self._run(relay, tokens)
            stop_if_cancelled()  # removed or changed by a reload while it ran
            self._store.record(result)
            _log_result(result, previous)
            previous = result
            if not self.first_round.is_set():
                self._probed_once.add(relay.name)
                self._unprobed.discard(relay.name)
                self._first_round_check()

        await run_every(relay.interval, once, key=f"relay:{relay.name}",
                        first_spread=self._window, what="probe loop", clock=self._clock,
                        start=epoch)

    async def _run(self, relay: RelayConfig, tokens: TokenSource | None) -> RelayResult:
        started = time.time()
        try:
            result = await self._probe(relay, nameservers=self._nameservers,
                                       dns_timeout=self._dns_timeout, token_source=tokens)
        except Exception as exc:  # a bug in the exporter, not a failure of the relay
            log.exception("probe crashed", extra={"relay": relay.name})
            result = crashed_result(relay.name, started, exc)
        if isinstance(tokens, RefreshingTokenSource):
            self._store.record_token(
                relay.name,
                expires_at=tokens.expires_at,
                failures=tokens.refresh_failures,
                error=tokens.last_error,
            )
        return result


def _log_result(result: RelayResult, previous: RelayResult | None) -> None:
    """Changes of state at info or warning (the first failure, a new reason, a recovery); a
    result like the last one at debug, so a large healthy fleet logs nothing per probe."""
    fields: dict[str, object] = {"relay": result.relay, "duration": round(result.duration, 4)}
    if result.success:
        if previous is not None and not previous.success:
            log.info("relay recovered", extra=fields)
        else:
            log.debug("probe succeeded", extra=fields)
        return
    same = (previous is not None and not previous.success
            and (previous.reason, previous.failed_phase) == (result.reason, result.failed_phase))
    fields.update(
        reason=result.reason.value if result.reason else None,
        phase=result.failed_phase.value if result.failed_phase else None,
        hint=result.hint,
        cause=result.cause,
        detail=result.detail,
        reply=result.reply,
    )
    log.log(logging.DEBUG if same else logging.WARNING, "probe failed", extra=fields)
