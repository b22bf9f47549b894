"""The task helpers every scheduler shares: run_every on a virtual clock, the resizable Limiter,
cancellation that always ends, and the lag figures of the schedule and the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from exporter.tasks import (
    Limiter,
    LoopLagMonitor,
    cancel_and_wait,
    run_every,
    spread_offset,
)
from tests.clock import VirtualClock, settle
from tests.helpers import eventually

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
        self.dues: list[float] = []  # the planned times run_every hands each run
        self.takes = takes
        self.fails = fails

    async def __call__(self, due: float) -> None:
        n = len(self.starts)
        self.starts.append(self.clock.elapsed)
        self.dues.append(due - self.clock.start)
        if self.takes(n):
            await self.clock.sleep(self.takes(n))
        if self.fails(n):
            raise RuntimeError(f"run {n} failed")


def loop(clock: VirtualClock, runs: Runs, interval: float, *, first_spread: float | None = None,
         key: str = "check") -> asyncio.Task[None]:
    return asyncio.create_task(run_every(interval, runs, key=key, first_spread=first_spread,
                                         clock=clock))


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_runs_once_per_interval_on_a_fixed_grid() -> None:
    """With a 2 s interval, runs start at exactly the loop's offset and every 2 s after it:
    20 s hold 10 runs, and each run is told the time it was planned for."""
    clock = VirtualClock()
    runs = Runs(clock)
    offset = spread_offset("check") * 2
    task = loop(clock, runs, 2.0)
    try:
        await clock.advance(20)
        assert runs.starts == pytest.approx([offset + 2 * k for k in range(10)])
        assert runs.dues == pytest.approx(runs.starts)
    finally:
        await cancel_and_wait([task])


async def test_the_grid_does_not_drift_over_many_runs() -> None:
    """A loop started at a 3.7 s offset on a 10 s interval still starts at 3.7 s past each
    tenth second after 100 runs: loops spread at the start stay spread."""
    clock = VirtualClock()
    runs = Runs(clock)
    offset = spread_offset("drift") * 10
    task = loop(clock, runs, 10.0, first_spread=None, key="drift")
    try:
        await clock.advance(1000)
        assert len(runs.starts) == 100
        assert runs.starts == pytest.approx([offset + 10 * k for k in range(100)])
    finally:
        await cancel_and_wait([task])


async def test_a_run_that_overruns_its_slot_skips_to_the_next_slot_instead_of_bursting() -> None:
    """A 7 s run on a 2 s schedule (slots at offset + 0, 2, 4 ... s): the slots it overran
    are skipped, not run three times in a row to catch up, and the next run starts at the
    next slot of the grid (offset + 10 s, as the run ends at offset + 9 s)."""
    clock = VirtualClock()
    runs = Runs(clock, takes=lambda n: 7.0 if n == 1 else 0.0)
    offset = spread_offset("check") * 2
    task = loop(clock, runs, 2.0)
    try:
        await clock.advance(15)
        assert runs.starts == pytest.approx([offset + t for t in (0, 2, 10, 12, 14)])
    finally:
        await cancel_and_wait([task])


def test_offsets_are_fixed_by_the_name_alone() -> None:
    """The same name has the same offset in another process (no per-process hash seed), and
    different names get different offsets."""
    names = ["relay:mx1", "relay:mx2", "canary:mx1", "dns-domain:example.com"]
    here = [spread_offset(n) for n in names]
    code = ("from exporter.tasks import spread_offset; "
            f"print([spread_offset(n) for n in {names!r}])")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345"}).stdout
    assert there.strip() == repr(here)
    assert len(set(here)) == len(here)
    assert all(0 <= f < 1 for f in here)


async def test_first_runs_of_1000_checks_spread_evenly_over_the_first_interval() -> None:
    """1,000 loops started together on a 60 s interval each start their first run within the
    first 60 s, no tenth of it with more than 1.3 times its share, and the same names start
    at the same times on every start."""
    firsts: list[list[float]] = []
    for _ in range(2):
        clock = VirtualClock()
        all_runs = [Runs(clock) for _ in range(1000)]
        tasks = [loop(clock, r, 60.0, first_spread=None, key=f"relay:r{i}")
                 for i, r in enumerate(all_runs)]
        try:
            await clock.advance(60)
            assert all(len(r.starts) == 1 for r in all_runs)
            firsts.append([r.starts[0] for r in all_runs])
        finally:
            await cancel_and_wait(tasks)
    assert firsts[0] == firsts[1]
    assert all(0 <= t < 60 for t in firsts[0])
    per_tenth = [sum(1 for t in firsts[0] if 6 * k <= t < 6 * (k + 1)) for k in range(10)]
    assert max(per_tenth) <= 1.3 * 100, per_tenth
    assert min(per_tenth) >= 0.7 * 100, per_tenth


async def test_a_spread_window_shorter_than_the_interval_brings_the_first_runs_forward() -> None:
    """With first_spread 2 s on a 60 s interval every first run starts within 2 s, once, evenly
    over them (with 0, all at once); from the second run on each loop keeps to its place in
    the whole interval, so the later runs spread over the minute, and no loop waits longer
    than an interval."""
    for window in (2.0, 0.0):
        clock = VirtualClock()
        all_runs = [Runs(clock) for _ in range(200)]
        tasks = [loop(clock, r, 60.0, first_spread=window, key=f"r{i}")
                 for i, r in enumerate(all_runs)]
        try:
            await clock.advance(window)
            assert all(len(r.starts) == 1 and r.starts[0] <= window for r in all_runs)
            if window:
                firsts = [r.starts[0] for r in all_runs]
                per_fifth = [sum(1 for t in firsts if k * window / 5 <= t < (k + 1) * window / 5)
                             for k in range(5)]
                assert max(per_fifth) <= 1.3 * 40, per_fifth
            await clock.advance_to(180)
            for i, r in enumerate(all_runs):
                phase = spread_offset(f"r{i}") * 60
                assert r.starts[1:] == pytest.approx([phase + 60 * k for k in range(3)][
                    -len(r.starts[1:]):]), (i, r.starts)
                assert all(g <= 60 + 1e-9 for g in gaps(r.starts))
            seconds = [r.starts[1] % 60 for r in all_runs]
            assert max(seconds) > 50 and min(seconds) < 10
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
    task = asyncio.create_task(run_every(1.0, runs, key="r", what="probe loop", clock=clock))
    try:
        await clock.advance(4)  # four runs, one a second
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

    async def swallowing(due: float) -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    task = asyncio.create_task(run_every(60.0, swallowing, key="r", first_spread=0,
                                         clock=clock))
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


# -- event-loop lag ----------------------------------------------------------------------------


async def test_the_loop_lag_monitor_sees_a_callback_that_holds_the_loop() -> None:
    """A callback that blocks the event loop for 0.2 s shows as a tick at least 0.15 s late,
    while the ticks before it were counted too."""
    monitor = LoopLagMonitor(period=0.01)
    task = asyncio.create_task(monitor.run())
    try:
        await eventually(lambda: monitor.lag.snapshot().count >= 3, interval=0.01)
        time.sleep(0.2)  # noqa: ASYNC251 -- holds the loop, as blocking file I/O would
        before = monitor.lag.snapshot().count
        await eventually(lambda: monitor.lag.snapshot().count > before, interval=0.01)
        hist = monitor.lag.snapshot()
        late = sum(n for bound, n in zip((*hist.bounds, float("inf")), hist.counts,
                                         strict=True) if bound > 0.1)
        assert late >= 1, hist
        assert hist.total >= 0.15
    finally:
        await cancel_and_wait([task])
