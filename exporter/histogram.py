"""Histogram: bucket counts as an immutable value, fed by stores and read by metric families."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["DURATION_BUCKETS", "PHASE_BUCKETS", "Histogram"]

# Seconds. SMTP phases on loopback take well under a millisecond; across the internet,
# tens to hundreds; a postscreen greeting delay or a tarpit, several seconds.
PHASE_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

# Seconds, for a whole probe: few bounds, as every relay carries them. A loopback or LAN relay
# answers within 0.1 s, a healthy relay across the internet within 0.5 s (STARTTLS + AUTH),
# 1 s is noticeably slow, 5 s is a greeting delay or a struggling server.
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Non-cumulative bucket counts (the last one is +Inf), sum and count."""

    bounds: tuple[float, ...] = PHASE_BUCKETS
    counts: tuple[int, ...] = (0,) * (len(PHASE_BUCKETS) + 1)
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, (0,) * (len(bounds) + 1))

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float) -> Histogram:
        i = bisect.bisect_left(self.bounds, value)
        counts = list(self.counts)
        counts[i] += 1
        return Histogram(self.bounds, tuple(counts), self.total + value)

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out
