"""One loop per relay, each on its own interval with jitter, under a global concurrency limit."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.config import AuthConfig, AuthMechanism, Config, RelayConfig
from exporter.oauth2 import RefreshingTokenSource, StaticTokenSource, TokenSource
from exporter.probes.smtp import probe_relay
from exporter.results import HINTS, Reason, RelayResult
from exporter.store import ResultStore

__all__ = ["ProbeFn", "Scheduler", "cancel_and_wait", "run_every", "token_source_for"]

log = logging.getLogger(__name__)

ProbeFn = Callable[..., Awaitable[RelayResult]]
# The first probe of each relay starts at a random point of this window (or of its interval,
# if shorter), so a fresh start does not fire every probe at once.
FIRST_SPREAD = 10.0
# Each later start moves by up to this share of the interval, so relays drift apart.
JITTER = 0.05
# Many relays spread their first probes wider, so start-up asks at most this many probe
# starts a second (1,000 relays: 50 s instead of 10 s); a burst fills max_concurrent_probes,
# and probes waiting for a slot start late ever after, as the schedule keeps its shape.
START_RATE = 20.0


async def run_every(
    interval: float,
    run: Callable[[], Awaitable[None]],
    *,
    first_spread: float = FIRST_SPREAD,
    what: str = "check",
) -> None:
    """Call ``run`` every ``interval`` seconds with jitter, forever.

    The first call starts at a random point of ``first_spread`` (or the interval, if
    shorter); a run that overruns its slot delays the next rather than bursting; an
    exception from ``run`` is a bug, logged, and the schedule goes on."""
    loop = asyncio.get_running_loop()
    due = loop.time() + random.uniform(0, min(interval, first_spread))
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            await run()
        except Exception:
            log.exception(f"{what} crashed")
        _stop_if_cancelled()
        due += interval * (1 + random.uniform(-JITTER, JITTER))
        if due < loop.time():  # fell behind (a long run, a suspended host): skip, not burst
            due = loop.time() + interval


def _stop_if_cancelled() -> None:
    """End a loop whose cancellation was swallowed on the way (Python 3.11's asyncio.wait_for
    drops a cancel that arrives together with the awaited reply): without this, the loop
    would sleep to its next run and a stop or reload would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again any that swallowed
    its cancellation."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)


def token_source_for(auth: AuthConfig, *, ca_file: str | None = None) -> TokenSource | None:
    """The token source an XOAUTH2 relay or mailbox uses, or None for other mechanisms.

    The token endpoint is verified against the system's CAs unless ``ca_file`` is given: a
    relay's private ``ca_file`` is about the relay, not about its OAuth2 provider."""
    if auth.mechanism is not AuthMechanism.XOAUTH2:
        return None
    if auth.token is not None:
        return StaticTokenSource(auth.token)
    if auth.oauth2 is None:
        return None
    o = auth.oauth2
    return RefreshingTokenSource(
        token_url=o.token_url,
        client_id=o.client_id,
        client_secret=o.client_secret,
        refresh_token=o.refresh_token,
        scope=o.scope,
        grant_type=o.grant_type,
        ca_file=ca_file,
    )


@dataclass
class _Job:
    relay: RelayConfig
    task: asyncio.Task[None]
    tokens: TokenSource | None


class Scheduler:
    """Keeps exactly one probe loop per configured relay; ``apply`` reconciles on reload."""

    def __init__(self, store: ResultStore, *, probe: ProbeFn = probe_relay) -> None:
        self._store = store
        self._probe = probe
        self._jobs: dict[str, _Job] = {}
        self._sem = asyncio.Semaphore(64)
        self._limit = 64
        self._nameservers: tuple[tuple[str, int], ...] = ()
        self._first_spread = FIRST_SPREAD

    @property
    def relays(self) -> list[str]:
        return sorted(self._jobs)

    def apply(self, config: Config) -> None:
        """Start loops for new or changed relays, stop those removed; unchanged ones keep time."""
        if config.max_concurrent_probes != self._limit:
            self._limit = config.max_concurrent_probes
            self._sem = asyncio.Semaphore(self._limit)
        restart_all = config.dns.nameservers != self._nameservers
        self._nameservers = config.dns.nameservers
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
            async with self._sem:
                result = await self._run(relay, tokens)
            _stop_if_cancelled()  # removed or changed by a reload while it ran
            self._store.record(result)
            _log_result(result, previous)
            previous = result

        await run_every(relay.interval, once, first_spread=self._first_spread, what="probe loop")

    async def _run(self, relay: RelayConfig, tokens: TokenSource | None) -> RelayResult:
        started = time.time()
        try:
            result = await self._probe(relay, nameservers=self._nameservers, token_source=tokens)
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
        detail=result.detail,
        reply=result.reply,
    )
    log.warning("probe failed", extra=fields)
