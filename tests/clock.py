"""A virtual clock for scheduling tests: time moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["VirtualClock"]

# How often ``advance`` lets the event loop run after waking a sleeper: enough for what a
# woken task starts (a probe, a limiter hand-over, the next sleep) to reach its next wait.
SETTLE_STEPS = 50


class VirtualClock:
    """A ``exporter.tasks.Clock`` on virtual seconds: ``sleep`` waits until ``advance`` moves
    the time past its end, so a schedule of minutes runs in milliseconds and every run
    starts at exactly its planned time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self._now = start
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._now - self.start

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # as asyncio.sleep(0): let others run, no time passes
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), wake))
        await wake  # a cancelled sleeper's future is cancelled too; advance skips it

    def hold(self, seconds: float) -> None:
        """Time passes while the event loop is held (a long synchronous start-up step): no
        task runs, and sleepers due meanwhile wake only at the next ``advance``, late."""
        self._now += seconds

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``: each sleeper wakes at its own end, in order, and what
        it starts runs before the clock moves past it."""
        target = self._now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, wake = heapq.heappop(self._sleepers)
            if wake.done():
                continue
            self._now = max(self._now, due)
            wake.set_result(None)
            await settle()
        self._now = target
        await settle()

    async def advance_to(self, elapsed: float) -> None:
        """Move time on until ``elapsed`` virtual seconds have passed since the start."""
        await self.advance(max(0.0, self.start + elapsed - self._now))


async def settle() -> None:
    """Let every task that can run without waiting for time or I/O run to its next wait."""
    for _ in range(SETTLE_STEPS):
        await asyncio.sleep(0)
