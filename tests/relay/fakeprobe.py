"""A probe function for scheduling tests: it talks to no relay and keeps count of its calls."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from exporter.config import RelayConfig
from exporter.relay.result import RelayResult
from tests.clock import VirtualClock, settle

__all__ = ["FakeProbe"]


class FakeProbe:
    """Stands in for ``probe_relay``: each call is recorded with its virtual start time and
    succeeds at once, after ``takes(relay)`` virtual seconds, or, when ``held(relay)``, only
    once the test releases it."""

    def __init__(self, clock: VirtualClock, *, takes: Callable[[str], float] = lambda _: 0.0,
                 held: Callable[[str], bool] = lambda _: False) -> None:
        self.clock = clock
        self.takes = takes
        self.held = held
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.running: dict[str, int] = defaultdict(int)
        self.peak = 0  # most calls running at once, since the start or ``reset_peak``
        self.peak_per_relay = 0
        self._waiting: list[asyncio.Event] = []  # held calls, oldest first

    @property
    def active(self) -> int:
        return sum(self.running.values())

    @property
    def calls(self) -> int:
        return sum(len(s) for s in self.starts.values())

    def reset_peak(self) -> None:
        self.peak = self.active

    async def release(self, count: int = 1) -> None:
        """Let the ``count`` oldest held calls return, then let what that starts run."""
        for event in self._waiting[:count]:
            event.set()
        del self._waiting[:count]
        await settle()

    async def __call__(self, relay: RelayConfig, **_: Any) -> RelayResult:
        name = relay.name
        self.starts[name].append(self.clock.elapsed)
        self.running[name] += 1
        self.peak = max(self.peak, self.active)
        self.peak_per_relay = max(self.peak_per_relay, self.running[name])
        event = asyncio.Event()
        try:
            if self.held(name):
                self._waiting.append(event)
                await event.wait()
            elif self.takes(name):
                await self.clock.sleep(self.takes(name))
        finally:
            self.running[name] -= 1
            if event in self._waiting:  # cancelled while held: nothing left to release
                self._waiting.remove(event)
        return RelayResult(relay=name, success=True, started_at=self.clock.now(),
                           duration=self.takes(name))
