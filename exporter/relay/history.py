"""History: a relay's last probes in a compact, immutable form, for the status page's chart."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from exporter.model import Phase, Reason
from exporter.relay.result import RelayResult

__all__ = ["History", "PastProbe"]

_PHASES = tuple(Phase)
_REASONS = tuple(Reason)
_CODES = {reason: i + 1 for i, reason in enumerate(_REASONS)}
# started_at, duration, success, reason (0 for none, else its index + 1), then each phase's
# seconds (NaN: not reached): 54 bytes a probe, where a RelayResult with its transcript
# takes a few kilobytes.
_ENTRY = struct.Struct(f"<dfBB{len(_PHASES)}f")
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class PastProbe:
    """One past probe as the chart draws it: when, how long, each phase, and its reason."""

    started_at: float
    duration: float
    success: bool
    reason: Reason | None
    phases: Mapping[Phase, float]


@dataclass(frozen=True, slots=True)
class History:
    """The last ``limit`` probes of a relay, oldest first, packed in one bytes value."""

    limit: int = 60
    packed: bytes = b""

    def add(self, result: RelayResult) -> History:
        """A new History ending with ``result``; the oldest probe drops out when full."""
        entry = _ENTRY.pack(
            result.started_at, result.duration, result.success,
            0 if result.reason is None else _CODES[result.reason],
            *(result.phases.get(phase, _NAN) for phase in _PHASES),
        )
        keep = (self.limit - 1) * _ENTRY.size
        return History(self.limit, self.packed[max(0, len(self.packed) - keep):] + entry)

    def __len__(self) -> int:
        return len(self.packed) // _ENTRY.size

    def __iter__(self) -> Iterator[PastProbe]:
        for started_at, duration, success, code, *seconds in _ENTRY.iter_unpack(self.packed):
            yield PastProbe(
                started_at, duration, bool(success), _REASONS[code - 1] if code else None,
                {p: s for p, s in zip(_PHASES, seconds, strict=True) if not math.isnan(s)},
            )
