"""The relay scheduler on a virtual clock: intervals, the start-up spread, the concurrency limit,
how late probes start, and what a reload does to probes that are running or waiting for a
slot."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from exporter.app import relay_infos
from exporter.config import Config
from exporter.metrics import ExporterCollector
from exporter.relay.scheduler import FIRST_PROBES_WITHIN, Scheduler
from exporter.relay.store import ResultStore
from exporter.tasks import LAG_BUCKETS, LagRecorder, SchedulingSnapshot, spread_offset
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

    def registry(self) -> CollectorRegistry:
        """What /metrics shows of this scheduler."""
        registry = CollectorRegistry()
        idle = LagRecorder().snapshot()
        registry.register(ExporterCollector(self.store.snapshot, scheduling=lambda: (
            SchedulingSnapshot(lag={"probe": self.scheduler.lag.snapshot()}, loop_lag=idle,
                               probes_in_flight=self.scheduler.limiter.active))))
        return registry


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


# Every relay's first probe is due within this many seconds (a 60 s interval).
ONE_INTERVAL = 60


async def test_each_relay_keeps_its_own_interval(bed: Callable[..., Bed]) -> None:
    """Relays on 1 s, 7 s and 45 s intervals: over 10 virtual minutes each is probed exactly
    once per its interval, its first probe at its name's offset within its first interval."""
    b = bed()
    config = make_config(*(relay(f"every{s}", f"{s}s") for s in (1, 7, 45)))
    b.apply(config)
    await b.clock.advance(600)
    for seconds in (1, 7, 45):
        starts = b.probe.starts[f"every{seconds}"]
        assert starts[0] == pytest.approx(spread_offset(f"relay:every{seconds}") * seconds)
        assert gaps(starts) == pytest.approx([seconds] * (len(starts) - 1)), seconds
        assert starts[-1] > 600 - seconds  # still going at the end
        assert b.store.snapshot().relays[f"every{seconds}"].probes == len(starts)


async def test_1000_relays_spread_their_first_probes_over_the_first_interval(
    bed: Callable[..., Bed],
) -> None:
    """1,000 relays on a 60 s interval: every first probe starts within the first minute, none
    of its tenths holds more than 1.3 times its share, and each relay's probes then come every
    60 s at the same offset, so the second minute looks like the first."""
    b = bed()
    b.apply(relays(1000))
    await b.clock.advance(ONE_INTERVAL)
    assert b.probe.calls == 1000
    firsts = [s[0] for s in b.probe.starts.values()]
    per_tenth = [sum(1 for t in firsts if 6 * k <= t < 6 * (k + 1)) for k in range(10)]
    assert max(per_tenth) <= 130, per_tenth
    await b.clock.advance(ONE_INTERVAL)
    assert b.probe.calls == 2000
    for starts in b.probe.starts.values():
        assert starts[1] - starts[0] == pytest.approx(60)


async def test_first_probes_keep_their_offsets_when_the_start_up_holds_the_loop(
    bed: Callable[..., Bed],
) -> None:
    """The loop is held for 5 s after the scheduler starts 1,000 relays (what the rest of a
    big start-up takes): the offsets count from the scheduler's start, so every first probe
    still starts within the first minute after it, those due in the first 5 s at once (late,
    and counted so) and the rest exactly at their offsets."""
    b = bed()
    b.apply(relays(1000))
    b.clock.hold(5)
    await b.clock.advance(ONE_INTERVAL - 5)
    assert b.probe.calls == 1000
    for name, starts in b.probe.starts.items():
        offset = spread_offset(f"relay:{name}") * ONE_INTERVAL
        assert starts[0] == pytest.approx(max(offset, 5)), name
    late = sum(1 for name in b.probe.starts
               if spread_offset(f"relay:{name}") * ONE_INTERVAL < 5)
    assert 40 <= late <= 130  # about 5/60 of them
    lag = b.scheduler.lag.snapshot()
    assert lag.count == 1000
    # Late ones show up as schedule lag of up to 5 s (buckets 0.5 s .. 5 s), the others as 0.
    assert sum(lag.counts[LAG_BUCKETS.index(0.5) + 1:]) >= late * 0.85


async def test_relays_on_long_intervals_have_their_first_probe_within_a_minute(
    bed: Callable[..., Bed],
) -> None:
    """200 relays on a 10-minute interval: every first probe comes within the first minute
    (an alert's `for: 5m` never sees a relay that was simply not probed yet), and from the
    second probe on they spread over the whole 10 minutes, each every 10 minutes at most."""
    b = bed()
    b.apply(relays(200, interval="10m"))
    await b.clock.advance(FIRST_PROBES_WITHIN)
    assert b.probe.calls == 200
    await b.clock.advance(20 * 60)
    seconds = [s[1] % 600 for s in b.probe.starts.values()]
    per_minute = [sum(1 for t in seconds if 60 * k <= t < 60 * (k + 1)) for k in range(10)]
    assert min(per_minute) >= 10, per_minute
    for starts in b.probe.starts.values():
        assert all(g <= 600 + 1e-6 for g in gaps(starts)), starts


async def test_10000_relays_start_on_time_from_the_first_interval_on(
    bed: Callable[..., Bed],
) -> None:
    """10,000 relays every 60 s, probes of 0.25 s, max_concurrent_probes 64: the spread keeps
    the slots from filling, so smtp_exporter_schedule_lag_seconds shows at least 99 % of the
    probes of the first two minutes starting within 0.1 s of their time."""
    b = bed(takes=lambda _: 0.25)
    b.apply(relays(10_000, limit=64))
    await b.clock.advance(2 * ONE_INTERVAL)
    registry = b.registry()
    labels = {"kind": "probe"}
    total = registry.get_sample_value("smtp_exporter_schedule_lag_seconds_count", labels)
    on_time = registry.get_sample_value("smtp_exporter_schedule_lag_seconds_bucket",
                                        {**labels, "le": "0.1"})
    assert total is not None and total >= 19_900
    assert on_time is not None and on_time >= 0.99 * total, (on_time, total)
    assert b.probe.peak <= 64


async def test_a_probe_waiting_for_a_slot_shows_as_schedule_lag(
    bed: Callable[..., Bed],
) -> None:
    """Limit 1, two relays, the first probe held 30 s past the second's time: the second
    starts 30 s late and /metrics says so; probes_in_flight counts the probe running."""
    b = bed(held=lambda _: True)
    b.apply(relays(2, limit=1))
    second = max(["r0", "r1"], key=lambda n: spread_offset(f"relay:{n}"))
    second_due = spread_offset(f"relay:{second}") * 60
    await b.clock.advance(second_due)
    registry = b.registry()
    assert registry.get_sample_value("smtp_exporter_probes_in_flight") == 1
    assert registry.get_sample_value("smtp_exporter_schedule_lag_seconds_count",
                                     {"kind": "probe"}) == 1  # only the first has started
    await b.clock.advance(30)
    await b.probe.release()  # the first ends; the second takes the slot, 30 s late
    assert b.probe.running[second] == 1
    assert registry.get_sample_value("smtp_exporter_probes_in_flight") == 1
    labels = {"kind": "probe"}
    assert registry.get_sample_value("smtp_exporter_schedule_lag_seconds_sum",
                                     labels) == pytest.approx(30)
    assert registry.get_sample_value("smtp_exporter_schedule_lag_seconds_bucket",
                                     {**labels, "le": "5.0"}) == 1  # the first, on time
    assert registry.get_sample_value("smtp_exporter_schedule_lag_seconds_bucket",
                                     {**labels, "le": "+Inf"}) == 2
    await b.probe.release()
    assert registry.get_sample_value("smtp_exporter_probes_in_flight") == 0


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
    await b.clock.advance(ONE_INTERVAL)  # every first probe is due
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
    await b.clock.advance(ONE_INTERVAL)
    assert (b.probe.active, b.probe.calls) == (2, 2)
    b.apply(relays(6, limit=5))
    await b.clock.advance(0)
    assert (b.probe.active, b.probe.calls) == (5, 5)


async def test_relays_removed_by_a_reload_free_their_slots(bed: Callable[..., Bed]) -> None:
    """Limit 1, three relays due: a reload that removes the running one and one waiting for a
    slot starts the third at once; the removed ones are never probed again."""
    b = bed(held=lambda _: True)
    b.apply(relays(3, limit=1))
    await b.clock.advance(ONE_INTERVAL)
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
        assert gaps(starts) == pytest.approx([10] * (len(starts) - 1)), starts
