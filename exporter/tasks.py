"""Task helpers every feature's scheduler shares: a loop on a fixed grid with a per-check offset
on an injectable clock, a concurrency limit that can be resized while held, cancellation that
always ends, and the figures of how late scheduled work and the event loop run."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

__all__ = [
    "FIRST_SPREAD",
    "LAG_BUCKETS",
    "LOOP_CLOCK",
    "START_RATE",
    "Clock",
    "LagHistogram",
    "LagRecorder",
    "Limiter",
    "LoopClock",
    "LoopLagMonitor",
    "SchedulingSnapshot",
    "cancel_and_wait",
    "first_window",
    "run_every",
    "spread_offset",
    "stop_if_cancelled",
]

log = logging.getLogger(__name__)

# Checks on long intervals (canaries, DNS) have their first run within this window, widened
# so that start-up asks at most START_RATE first runs a second, and never past the interval.
FIRST_SPREAD = 10.0
START_RATE = 20.0

# Seconds late: a healthy schedule starts within a millisecond or two; 0.1 s is the goal at
# 10,000 relays; beyond a second something holds the loop or the concurrency limit is too low.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


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


def spread_offset(key: str) -> float:
    """A fraction in [0, 1) fixed by ``key`` alone: the same in every process and release, and
    evenly spread over many keys (as Prometheus spreads its scrapes by a hash of the target)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_window(checks: int, *, at_least: float = FIRST_SPREAD) -> float:
    """The window the first runs of ``checks`` loops spread over: ``at_least``, or wider so
    that at most START_RATE start a second (run_every caps it at each loop's interval)."""
    return max(at_least, checks / START_RATE)


async def run_every(
    interval: float,
    run: Callable[[float], Awaitable[None]],
    *,
    key: str,
    first_spread: float | None = None,
    what: str = "check",
    clock: Clock = LOOP_CLOCK,
    start: float | None = None,
) -> None:
    """Call ``run(due)`` every ``interval`` seconds, forever; ``due`` is the clock time the run
    was planned for, so the run can tell how late it starts.

    ``key`` fixes a phase in the interval (``spread_offset``), so checks started together
    spread evenly over it. Runs keep to the grid ``start + phase * interval + k * interval``:
    a fixed grid keeps the spread even for good, where a random jitter would let loops drift
    together. If ``first_spread`` is shorter than the interval, the first run comes within it
    (at the grid's first slot if that is early enough), so a check on a long interval has
    its first result soon; the grid takes over from the next run. A run that overruns its
    slot skips the slots it missed rather than bursting; an exception from ``run`` is a bug,
    logged, and the schedule goes on. ``start`` anchors the grid (default: now): loops
    started together pass the same one, so their spread holds even if some begin late."""
    phase = spread_offset(key)
    if start is None:
        start = clock.now()
    grid = start + phase * interval
    window = interval if first_spread is None else min(interval, max(0.0, first_spread))
    # A loop whose slot 0 falls within the window starts there; the others spread over the
    # whole window by the rest of their phase. Together they are even over the window, and
    # no loop runs twice in it.
    share = window / interval if interval > 0 else 1.0
    on_grid = phase <= share
    due = grid if on_grid else start + (phase - share) / (1 - share) * window
    next_slot = 1 if on_grid else 0
    while True:
        await clock.sleep(max(0.0, due - clock.now()))
        try:
            await run(due)
        except Exception:
            log.exception(f"{what} crashed")
        stop_if_cancelled()
        # The next slot of the grid that has not passed yet (a long run, a suspended host).
        slot = max(next_slot, math.ceil((clock.now() - grid) / interval))
        due = grid + slot * interval
        next_slot = slot + 1


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


@dataclass(frozen=True, slots=True)
class LagHistogram:
    """Seconds late, as non-cumulative bucket counts (the last one is +Inf) and their sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class LagRecorder:
    """Counts how late things start into LAG_BUCKETS; fed on the event loop, read anywhere."""

    def __init__(self, bounds: tuple[float, ...] = LAG_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._total = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._total += seconds

    def late(self, due: float, now: float) -> None:
        """Record a start at ``now`` of what was due at ``due``."""
        self.observe(now - due)

    def snapshot(self) -> LagHistogram:
        return LagHistogram(self._bounds, tuple(self._counts), self._total)


class LoopLagMonitor:
    """The event loop's lag: how late a timer of ``period`` seconds fires. Work that holds the
    loop (a slow callback, blocking I/O) delays every probe's timing by as much."""

    def __init__(self, *, period: float = 0.25) -> None:
        self.period = period
        self.lag = LagRecorder()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lag.late(planned, loop.time())


@dataclass(frozen=True, slots=True)
class SchedulingSnapshot:
    """The scheduler's own health at one moment: how late each kind of scheduled work starts
    (``probe``, ``canary``, ``dns``), how late the event loop runs, and the probes running."""

    lag: Mapping[str, LagHistogram]
    loop_lag: LagHistogram
    probes_in_flight: int
