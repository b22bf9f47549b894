"""The task helpers every scheduler shares: run_every on a virtual clock, the resizable Limiter,
and cancellation that always ends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable

import pytest

from exporter.tasks import JITTER, Limiter, cancel_and_wait, run_every
from tests.clock import VirtualClock, settle

# -- the virtual clock the other tests stand on -----------------------------------------------


async def test_virtual_clock_wakes_sleepers_at_their_end_in_order() -> None:
    """VirtualClock wakes each sleeper when virtual time reaches its end, earliest first, skips
    cancelled ones, and moves no time on its own."""
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.elapsed))

    tasks = {name: asyncio.create_task(nap(name, s))
             for name, s in (("c", 3.0), ("a", 1.0), ("gone", 1.5), ("b", 2.0))}
    await settle()
    tasks["gone"].cancel()
    await settle()
    assert woke == [] and clock.elapsed == 0
    await clock.advance(2.5)
    assert woke == [("a", 1.0), ("b", 2.0)]
    assert clock.elapsed == 2.5
    await clock.advance(10)
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert tasks["gone"].cancelled()


# -- run_every ---------------------------------------------------------------------------------


class Runs:
    """A run for run_every that records the virtual time each call starts at."""

    def __init__(self, clock: VirtualClock, *, takes: Callable[[int], float] = lambda _: 0.0,
                 fails: Callable[[int], bool] = lambda _: False) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.takes = takes
        self.fails = fails

    async def __call__(self) -> None:
        n = len(self.starts)
        self.starts.append(self.clock.elapsed)
        if self.takes(n):
            await self.clock.sleep(self.takes(n))
        if self.fails(n):
            raise RuntimeError(f"run {n} failed")


def loop(clock: VirtualClock, runs: Runs, interval: float, *, first_spread: float = 0.0,
         seed: int = 1) -> asyncio.Task[None]:
    return asyncio.create_task(run_every(interval, runs, first_spread=first_spread, clock=clock,
                                         rng=random.Random(seed)))


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_runs_once_per_interval() -> None:
    """With a 2 s interval and no start spread, 5 s hold exactly 3 runs (at 0, about 2 and
    about 4 s) and 20 s exactly 10, each about 2 s after the last."""
    clock = VirtualClock()
    runs = Runs(clock)
    task = loop(clock, runs, 2.0)
    try:
        await clock.advance(5)
        assert len(runs.starts) == 3, runs.starts
        assert runs.starts[0] == 0
        await clock.advance_to(19.5)  # the 11th run is due at 20 s give or take 5 %: not yet
        assert len(runs.starts) == 10, runs.starts
        for gap in gaps(runs.starts):
            assert 2 * (1 - JITTER) <= gap <= 2 * (1 + JITTER), runs.starts
    finally:
        await cancel_and_wait([task])


async def test_jitter_moves_each_start_by_at_most_five_percent() -> None:
    """Starts drift by up to ±5 % of the interval each, so loops started together part; the
    drift does not add up to a different rate (100 runs of 10 s take 1,000 s give or take)."""
    clock = VirtualClock()
    runs = Runs(clock)
    task = loop(clock, runs, 10.0, seed=7)
    try:
        await clock.advance(995)
        spans = gaps(runs.starts)
        assert all(9.5 <= g <= 10.5 for g in spans), spans
        assert len(set(spans)) > 50  # not one fixed gap
        assert max(spans) - min(spans) > 0.5  # the whole ±5 % is used
        assert 98 <= len(runs.starts) <= 101
    finally:
        await cancel_and_wait([task])


async def test_a_run_that_overruns_its_slot_delays_the_next_instead_of_bursting() -> None:
    """A 7 s run on a 2 s schedule: the next run starts one interval after it ends, not at
    once and not three times in a row to catch up the slots it missed."""
    clock = VirtualClock()
    runs = Runs(clock, takes=lambda n: 7.0 if n == 1 else 0.0)
    task = loop(clock, runs, 2.0)
    try:
        await clock.advance(20)
        second, third, fourth = runs.starts[1:4]
        assert 1.9 <= second <= 2.1
        assert third == pytest.approx(second + 7 + 2), runs.starts  # ends at +7, then 2 s
        assert 1.9 <= fourth - third <= 2.1, runs.starts
        assert all(g >= 1.9 for g in gaps(runs.starts)), runs.starts
    finally:
        await cancel_and_wait([task])


async def test_first_runs_spread_over_the_window() -> None:
    """200 loops started together on a 60 s interval start their first runs across the 10 s
    spread window, about a tenth in each second, none before it starts or after it ends."""
    clock = VirtualClock()
    all_runs = [Runs(clock) for _ in range(200)]
    tasks = [loop(clock, r, 60.0, first_spread=10.0, seed=i) for i, r in enumerate(all_runs)]
    try:
        await clock.advance(10)
        firsts = [r.starts[0] for r in all_runs if r.starts]
        assert len(firsts) == 200
        assert all(0 <= t <= 10 for t in firsts)
        per_second = [sum(1 for t in firsts if s <= t < s + 1) for s in range(10)]
        assert all(8 <= n <= 35 for n in per_second), per_second
    finally:
        await cancel_and_wait(tasks)


async def test_a_short_interval_spreads_first_runs_over_the_interval_only() -> None:
    """With an interval shorter than the spread window, every first run starts within the
    first interval: a 2 s check does not wait up to 10 s for its first result."""
    clock = VirtualClock()
    all_runs = [Runs(clock) for _ in range(50)]
    tasks = [loop(clock, r, 2.0, first_spread=10.0, seed=i) for i, r in enumerate(all_runs)]
    try:
        await clock.advance(2)
        assert all(r.starts and r.starts[0] <= 2 for r in all_runs)
        assert max(r.starts[0] for r in all_runs) > 1.5
    finally:
        await cancel_and_wait(tasks)


async def test_a_crashing_run_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception from a run is logged with its traceback as a crash of ``what``, and the
    next run still starts on time."""
    caplog.set_level(logging.ERROR, logger="exporter.tasks")
    clock = VirtualClock()
    runs = Runs(clock, fails=lambda n: n == 0)
    task = asyncio.create_task(run_every(1.0, runs, first_spread=0, what="probe loop",
                                         clock=clock, rng=random.Random(3)))
    try:
        await clock.advance(3.5)  # runs at 0, about 1, 2 and 3 s; the 5th is 3.8 s at best
        assert len(runs.starts) == 4, runs.starts
        crashes = [r for r in caplog.records if r.getMessage() == "probe loop crashed"]
        assert len(crashes) == 1
        assert crashes[0].exc_info is not None
        assert "run 0 failed" in str(crashes[0].exc_info[1])
    finally:
        await cancel_and_wait([task])


async def test_a_loop_whose_run_swallows_the_cancel_still_ends() -> None:
    """A run that swallows its cancellation (as asyncio.wait_for can in Python 3.11) ends the
    loop when it returns, instead of sleeping to the next run and holding up a stop."""
    clock = VirtualClock()
    started = asyncio.Event()

    async def swallowing() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    task = asyncio.create_task(run_every(60.0, swallowing, first_spread=0, clock=clock))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    await asyncio.wait_for(asyncio.wait([task]), 5)  # no virtual time passes
    assert task.cancelled()


async def test_cancel_and_wait_cancels_again_until_a_task_ends() -> None:
    """A task that swallows the first cancel is cancelled again and waited for."""
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 10)
    assert task.done() and cancels == 2


# -- Limiter -----------------------------------------------------------------------------------


class Holders:
    """Tasks that take a slot of one Limiter and hold it until the test lets each go."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.order: list[int] = []  # who got a slot, in order
        self.active: set[int] = set()
        self.peak = 0
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._release: dict[int, asyncio.Event] = {}

    def start(self, *ids: int) -> None:
        for i in ids:
            self._release[i] = asyncio.Event()
            self.tasks[i] = asyncio.create_task(self._hold(i))

    async def _hold(self, i: int) -> None:
        async with self.limiter:
            self.order.append(i)
            self.active.add(i)
            self.peak = max(self.peak, len(self.active))
            try:
                await self._release[i].wait()
            finally:
                self.active.discard(i)

    async def release(self, *ids: int) -> None:
        for i in ids:
            self._release[i].set()
        await settle()

    async def stop(self) -> None:
        await cancel_and_wait(self.tasks.values())


async def test_limiter_holds_the_limit_and_serves_waiters_in_order() -> None:
    """With a limit of 3 and 8 takers, 3 hold at once, never more, and the others get a slot
    in the order they asked as slots free up."""
    holders = Holders(Limiter(3))
    holders.start(*range(8))
    try:
        await settle()
        assert holders.active == {0, 1, 2}
        assert holders.limiter.active == 3
        await holders.release(1)
        assert holders.active == {0, 2, 3}
        await holders.release(0, 2)  # two slots free in one step
        assert holders.active == {3, 4, 5}
        await holders.release(3, 4, 5, 6, 7)
        assert holders.order == list(range(8))
        assert holders.peak == 3
        assert holders.limiter.active == 0
    finally:
        await holders.stop()


async def test_lowering_the_limit_counts_the_slots_already_held() -> None:
    """Resized from 4 to 2 while 4 hold a slot: nobody is stopped, but no waiter starts until
    fewer than 2 hold one, and from then on at most 2 hold at once."""
    holders = Holders(Limiter(4))
    holders.start(*range(10))
    try:
        await settle()
        assert holders.active == {0, 1, 2, 3}
        holders.limiter.resize(2)
        await settle()
        assert holders.active == {0, 1, 2, 3}
        await holders.release(0)
        assert holders.active == {1, 2, 3}
        await holders.release(1)
        assert holders.active == {2, 3}
        await holders.release(2)
        assert holders.active == {3, 4}
        peak_after = 0
        for i in range(3, 10):
            await holders.release(i)
            peak_after = max(peak_after, len(holders.active))
        assert peak_after == 2
        assert holders.order == list(range(10))
        assert holders.peak == 4
    finally:
        await holders.stop()


async def test_raising_the_limit_wakes_waiters_at_once() -> None:
    """Resized from 1 to 3, two waiters start straight away, without waiting for the holder."""
    holders = Holders(Limiter(1))
    holders.start(*range(5))
    try:
        await settle()
        assert holders.active == {0}
        holders.limiter.resize(3)
        await settle()
        assert holders.active == {0, 1, 2}
        assert holders.limiter.active == 3
    finally:
        await holders.stop()


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    """A waiter cancelled after it was handed a slot, but before it took it, hands the slot to
    the next waiter, and one cancelled while still waiting takes none: no slot is lost."""
    limiter = Limiter(1)
    holders = Holders(limiter)
    await limiter.__aenter__()  # the test holds the only slot
    holders.start(0, 1, 2)
    try:
        await settle()
        assert holders.active == set()
        holders.tasks[1].cancel()  # still waiting
        await limiter.__aexit__(None, None, None)  # the slot goes to 0 ...
        holders.tasks[0].cancel()  # ... which is cancelled before it could take it
        await settle()
        assert holders.tasks[0].cancelled() and holders.tasks[1].cancelled()
        assert holders.active == {2}
        assert limiter.active == 1
        await holders.release(2)
        assert limiter.active == 0
        async with limiter:  # free for anyone again
            assert limiter.active == 1
    finally:
        await holders.stop()


async def test_a_holder_that_raises_frees_its_slot() -> None:
    """An exception inside the limited block frees the slot for the next waiter."""
    limiter = Limiter(1)
    holders = Holders(limiter)

    async def buggy() -> None:
        async with limiter:
            holders.start(0)
            await settle()
            assert holders.active == set()
            raise RuntimeError("probe bug")

    with pytest.raises(RuntimeError, match="probe bug"):
        await buggy()
    try:
        await settle()
        assert holders.active == {0}
        assert limiter.active == 1
    finally:
        await holders.stop()


async def test_new_takers_queue_behind_waiters() -> None:
    """A slot freed while others wait goes to the first waiter, not to a task that asks in
    the same moment."""
    limiter = Limiter(1)
    holders = Holders(limiter)
    await limiter.__aenter__()
    holders.start(0)
    try:
        await settle()
        await limiter.__aexit__(None, None, None)
        holders.start(1)  # asks before 0 had a chance to run
        await settle()
        assert holders.active == {0}
        await holders.release(0)
        assert holders.active == {1}
    finally:
        await holders.stop()
