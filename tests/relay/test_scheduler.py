"""The relay scheduler on a virtual clock: intervals, the start-up spread, the concurrency limit
and what a reload does to probes that are running or waiting for a slot."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.app import relay_infos
from exporter.config import Config
from exporter.relay.scheduler import START_RATE, Scheduler
from exporter.relay.store import ResultStore
from exporter.tasks import FIRST_SPREAD, JITTER
from tests.clock import VirtualClock
from tests.conftest import make_config
from tests.relay.fakeprobe import FakeProbe


@dataclass
class Bed:
    clock: VirtualClock
    probe: FakeProbe
    store: ResultStore
    scheduler: Scheduler

    def apply(self, config: Config) -> None:
        """Adopt ``config`` as the exporter does: the store learns the relays, then the
        scheduler reconciles its loops."""
        self.store.configure(relay_infos(config), warnings=(), source="test")
        self.scheduler.apply(config)


@pytest.fixture
async def bed() -> AsyncIterator[Callable[..., Bed]]:
    """Makes a Scheduler on a virtual clock with a FakeProbe; stops it after the test."""
    made: list[Scheduler] = []

    def make(**probe_options: Any) -> Bed:
        clock = VirtualClock()
        probe = FakeProbe(clock, **probe_options)
        store = ResultStore()
        scheduler = Scheduler(store, probe=probe, clock=clock)
        made.append(scheduler)
        return Bed(clock, probe, store, scheduler)

    yield make
    for scheduler in made:
        await scheduler.stop()


def relay(name: str, interval: str = "60s") -> dict[str, Any]:
    return {"name": name, "port": 25, "tls": "none", "interval": interval, "timeout": "900ms"}


def relays(count: int, *, interval: str = "60s", limit: int = 64) -> Config:
    """Relays r0, r1, ... on one interval, under one limit."""
    return make_config(*(relay(f"r{i}", interval) for i in range(count)),
                       max_concurrent_probes=limit)


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_each_relay_keeps_its_own_interval(bed: Callable[..., Bed]) -> None:
    """Relays on 1 s, 7 s and 45 s intervals: over 10 virtual minutes each is probed once per
    its interval, ±5 %, its first probe within its first interval."""
    b = bed()
    config = make_config(*(relay(f"every{s}", f"{s}s") for s in (1, 7, 45)))
    b.apply(config)
    await b.clock.advance(600)
    for seconds in (1, 7, 45):
        starts = b.probe.starts[f"every{seconds}"]
        assert 0 <= starts[0] <= min(seconds, FIRST_SPREAD), starts[:3]
        for gap in gaps(starts):
            assert seconds * (1 - JITTER) <= gap <= seconds * (1 + JITTER), (seconds, gap)
        assert starts[-1] > 600 - seconds * (1 + JITTER)  # still going at the end
        assert b.store.snapshot().relays[f"every{seconds}"].probes == len(starts)


async def test_many_relays_spread_their_first_probes_at_20_a_second(
    bed: Callable[..., Bed],
) -> None:
    """400 relays start their first probes over 20 s (20 a second), not all within the usual
    10 s, so a large config does not open hundreds of connections at once."""
    b = bed()
    b.apply(relays(400, interval="5m"))
    await b.clock.advance(10)
    assert 100 < b.probe.calls < 300  # about half: the window is 20 s, not 10 s
    await b.clock.advance(10)
    assert b.probe.calls == 400
    firsts = sorted(s[0] for s in b.probe.starts.values())
    assert firsts[-1] <= 400 / START_RATE
    per_second = [sum(1 for t in firsts if s <= t < s + 1) for s in range(20)]
    assert max(per_second) <= 45, per_second


async def test_the_limit_holds_and_no_relay_runs_twice_at_once(
    bed: Callable[..., Bed],
) -> None:
    """Probes of 1.5 s on a 1 s interval, 5 relays, limit 2: never more than 2 at once, a relay
    never overlaps itself but starts again 1 s after its probe ends, and both slots stay busy
    (38 to 40 probes in 30 s)."""
    b = bed(takes=lambda _: 1.5)
    b.apply(relays(5, interval="1s", limit=2))
    await b.clock.advance(30)
    assert b.probe.peak == 2
    assert b.probe.peak_per_relay == 1
    for starts in b.probe.starts.values():
        assert all(g >= 2.5 for g in gaps(starts)), starts
    finished = sum(r.probes for r in b.store.snapshot().relays.values())
    assert 38 <= finished <= 40


async def test_reload_to_a_lower_limit_counts_the_probes_in_flight(
    bed: Callable[..., Bed],
) -> None:
    """10 relays, limit 4, every probe held: a reload to limit 2 while 4 run starts nothing
    until fewer than 2 run, never lets more than 4 run, and from then on at most 2."""
    b = bed(held=lambda _: True)
    b.apply(relays(10, limit=4))
    await b.clock.advance(FIRST_SPREAD)  # every first probe is due
    assert (b.probe.active, b.probe.calls) == (4, 4)
    b.apply(relays(10, limit=2))
    await b.clock.advance(0)
    assert b.scheduler.relays == sorted(f"r{i}" for i in range(10))  # the same loops go on
    assert (b.probe.active, b.probe.calls) == (4, 4)
    for still_running in (3, 2):
        await b.probe.release()
        assert (b.probe.active, b.probe.calls) == (still_running, 4)
    await b.probe.release()  # one of the old four left: one more may start
    assert (b.probe.active, b.probe.calls) == (2, 5)
    b.probe.reset_peak()
    while b.probe.calls < 10 or b.probe.active:
        await b.probe.release()
    assert b.probe.peak == 2
    assert sum(r.probes for r in b.store.snapshot().relays.values()) == 10


async def test_reload_to_a_higher_limit_starts_waiting_probes_at_once(
    bed: Callable[..., Bed],
) -> None:
    """6 relays, limit 2, both probes held: a reload to limit 5 starts 3 waiting probes
    straight away, without waiting for a running one to finish."""
    b = bed(held=lambda _: True)
    b.apply(relays(6, limit=2))
    await b.clock.advance(FIRST_SPREAD)
    assert (b.probe.active, b.probe.calls) == (2, 2)
    b.apply(relays(6, limit=5))
    await b.clock.advance(0)
    assert (b.probe.active, b.probe.calls) == (5, 5)


async def test_relays_removed_by_a_reload_free_their_slots(bed: Callable[..., Bed]) -> None:
    """Limit 1, three relays due: a reload that removes the running one and one waiting for a
    slot starts the third at once; the removed ones are never probed again."""
    b = bed(held=lambda _: True)
    b.apply(relays(3, limit=1))
    await b.clock.advance(FIRST_SPREAD)
    assert (b.probe.active, b.probe.calls) == (1, 1)
    (running,) = (name for name, n in b.probe.running.items() if n)
    keep = next(f"r{i}" for i in range(3) if f"r{i}" != running)
    config = make_config(relay(keep), max_concurrent_probes=1)
    b.apply(config)
    await b.clock.advance(0)
    assert b.probe.running[keep] == 1
    assert b.probe.active == 1
    await b.probe.release()
    await b.clock.advance(600)
    assert set(b.probe.starts) == {running, keep}
    assert len(b.probe.starts[running]) == 1
    assert len(b.probe.starts[keep]) > 1


async def test_a_reload_without_changes_keeps_every_relay_on_time(
    bed: Callable[..., Bed],
) -> None:
    """Reloading the same config every 3 s restarts no loop: each relay keeps its 10 s
    schedule instead of starting over (which would delay its probes)."""
    b = bed()
    config = relays(3, interval="10s")
    b.apply(config)
    for _ in range(20):
        await b.clock.advance(3)
        b.apply(relays(3, interval="10s"))
    for starts in b.probe.starts.values():
        assert 5 <= len(starts) <= 7, starts
        assert all(9.5 <= g <= 10.5 for g in gaps(starts)), starts
