"""A canary's delivery path: its Received headers as hops from the relay to the mailbox, with
the time spent before each hop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.headers import Hop, parse_received

__all__ = ["MAX_HOP_LABELS", "RESOLUTION", "DeliveryPath", "PathHop", "delivery_path",
           "hop_delays", "path_to_dict"]

# Received dates and INTERNALDATE have whole seconds: a hop stamped up to this much before the
# previous one is rounding, not a clock running behind.
RESOLUTION = 1.0
# The most hops given their own series; the last one holds the sum of the rest.
MAX_HOP_LABELS = 10
# The most Received headers read: a longer chain is a loop or an attack, not a path.
MAX_HOPS = 100


@dataclass(frozen=True, slots=True)
class PathHop:
    """A hop and the time spent before it (since the previous hop, or the relay's accept)."""

    hop: Hop
    # Seconds, never negative; None when this hop's time is unknown (no date it could read).
    delay: float | None
    # The delay as the timestamps say it, negative when this hop's clock runs behind.
    raw_delay: float | None
    skewed: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryPath:
    """The hops in order from the relay's acceptance to the final delivery."""

    hops: tuple[PathHop, ...]
    encrypted: bool  # every hop after the relay says it came over TLS
    skewed: int  # hops stamped earlier than the hop before them (beyond RESOLUTION)
    parse_failures: int  # Received headers that did not parse; kept raw in their hop

    @property
    def total(self) -> float:
        """The sum of the hops' delays: the relay's acceptance to the mailbox storing it."""
        return sum(h.delay or 0.0 for h in self.hops)


def delivery_path(headers: Sequence[tuple[str, str]], *, sent_at: float,
                  internal_date: float | None) -> DeliveryPath:
    """The path of a message whose relay accepted it at ``sent_at`` and whose mailbox stored it
    at ``internal_date`` (which stands for the last hop's time when known).

    Received headers are prepended, so they are read bottom up: the relay's own first. A
    delay is measured from the latest time seen so far, so clock skew gives a 0 (counted in
    ``skewed``, its negative ``raw_delay`` kept) and the delays still add up to the time from
    acceptance to storage."""
    values = [v for name, v in headers if name.lower() == "received"][:MAX_HOPS]
    hops = [parse_received(value) for value in reversed(values)]
    latest = previous = sent_at
    out: list[PathHop] = []
    for index, hop in enumerate(hops):
        last = index == len(hops) - 1
        at = internal_date if last and internal_date is not None else hop.timestamp
        if at is None:
            out.append(PathHop(hop, None, None))
            continue
        raw = at - previous
        out.append(PathHop(hop, max(0.0, at - latest), raw, raw <= -RESOLUTION))
        previous, latest = at, max(latest, at)
    return DeliveryPath(
        hops=tuple(out),
        encrypted=bool(hops) and all(hop.encrypted for hop in hops[1:]),
        skewed=sum(1 for h in out if h.skewed),
        parse_failures=sum(1 for hop in hops if hop.error is not None),
    )


def hop_delays(path: DeliveryPath) -> list[tuple[str, float]]:
    """("1", seconds) ... per hop for the metric, at most MAX_HOP_LABELS: the last label holds
    the sum of it and every later hop; a hop of unknown time has no value."""
    out: list[tuple[str, float]] = []
    for index, hop in enumerate(path.hops[:MAX_HOP_LABELS - 1], start=1):
        if hop.delay is not None:
            out.append((str(index), hop.delay))
    rest = [h.delay for h in path.hops[MAX_HOP_LABELS - 1:] if h.delay is not None]
    if rest:
        out.append((str(MAX_HOP_LABELS), sum(rest)))
    return out


def path_to_dict(path: DeliveryPath) -> dict[str, Any]:
    """The JSON object of a path: stable keys, seconds, the raw header of a hop that did not
    parse (made safe, like every text here)."""
    return {
        "hops": len(path.hops),
        "encrypted": path.encrypted,
        "skewed": path.skewed,
        "parse_failures": path.parse_failures,
        "total": round(path.total, 3),
        "path": [
            {
                "hop": index,
                "from": h.hop.from_,
                "by": h.hop.by,
                "with": h.hop.with_,
                "tls": None if not h.hop.encrypted else {
                    "version": h.hop.tls_version, "cipher": h.hop.tls_cipher},
                "encrypted": h.hop.encrypted,
                "timestamp": h.hop.timestamp,
                "delay": None if h.delay is None else round(h.delay, 3),
                "raw_delay": None if h.raw_delay is None else round(h.raw_delay, 3),
                "clock_skew": h.skewed,
                **({"error": h.hop.error, "raw": h.hop.raw} if h.hop.error else {}),
            }
            for index, h in enumerate(path.hops, start=1)
        ],
    }
