"""Task helpers every feature's scheduler shares: a jittered loop on an injectable clock, a
concurrency limit that can be resized while held, and cancellation that always ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Protocol

__all__ = [
    "FIRST_SPREAD",
    "JITTER",
    "LOOP_CLOCK",
    "Clock",
    "Limiter",
    "LoopClock",
    "cancel_and_wait",
    "run_every",
    "stop_if_cancelled",
]

log = logging.getLogger(__name__)

# The first run of each loop starts at a random point of this window (or of its interval, if
# shorter), so a fresh start does not fire every check at once.
FIRST_SPREAD = 10.0
# Each later start moves by up to this share of the interval, so loops drift apart.
JITTER = 0.05


class Clock(Protocol):
    """Monotonic time and sleeping: the event loop's in the daemon, a fake one in tests."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock and ``asyncio.sleep``."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


LOOP_CLOCK: Clock = LoopClock()


async def run_every(
    interval: float,
    run: Callable[[], Awaitable[None]],
    *,
    first_spread: float = FIRST_SPREAD,
    what: str = "check",
    clock: Clock = LOOP_CLOCK,
    rng: random.Random | None = None,
) -> None:
    """Call ``run`` every ``interval`` seconds with jitter, forever.

    The first call starts at a random point of ``first_spread`` (or the interval, if
    shorter); a run that overruns its slot delays the next rather than bursting; an
    exception from ``run`` is a bug, logged, and the schedule goes on."""
    uniform = (rng or random).uniform
    due = clock.now() + uniform(0, min(interval, first_spread))
    while True:
        await clock.sleep(max(0.0, due - clock.now()))
        try:
            await run()
        except Exception:
            log.exception(f"{what} crashed")
        stop_if_cancelled()
        due += interval * (1 + uniform(-JITTER, JITTER))
        if due < clock.now():  # fell behind (a long run, a suspended host): skip, not burst
            due = clock.now() + interval


def stop_if_cancelled() -> None:
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


class Limiter:
    """At most ``limit`` holders at once; ``resize`` changes the limit for everyone, those
    already holding a slot included, so a reload never lets the old and new limits add up."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def active(self) -> int:
        return self._active

    def resize(self, limit: int) -> None:
        """Set a new limit; waiters start as soon as the holders fall under it."""
        self._limit = limit
        self._wake()

    def _wake(self) -> None:
        """Hand the free slots to the waiters, first come first served: a slot is counted as
        held from the moment it is handed over, so two slots freed at once start two waiters,
        and none of them can be overtaken by a later one."""
        while self._waiters and self._active < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter's future is cancelled: skip it
                waiter.set_result(None)
                self._active += 1

    async def __aenter__(self) -> None:
        if self._active < self._limit and not self._waiters:
            self._active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot it will not use: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        self._active -= 1
        self._wake()
