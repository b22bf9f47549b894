"""The metrics: block, at the top level and per relay: opt-in per-phase histograms and their
bucket bounds."""

from __future__ import annotations

import math
from dataclasses import replace

from exporter.config.model import NO_EXTRA_METRICS, MetricsConfig
from exporter.config.reader import Problems, as_mapping, check_keys, join
from exporter.config.values import describe
from exporter.model import Phase

__all__ = ["parse_metrics"]

_KEYS = ("buckets", "phase_histograms")
_PHASES = ", ".join(phase.value for phase in Phase)


def parse_metrics(
    value: object, path: str, problems: Problems, base: MetricsConfig = NO_EXTRA_METRICS
) -> MetricsConfig:
    """The block at ``path``; a key it leaves out keeps ``base``'s value (a relay's block
    overrides the top-level one key by key)."""
    block = as_mapping(value, path, problems, "metrics settings")
    check_keys(block, path, _KEYS, problems)
    out = base
    if block.get("phase_histograms") is not None:
        out = replace(out, phase_histograms=_phases(block["phase_histograms"],
                                                    join(path, "phase_histograms"), problems))
    if block.get("buckets") is not None:
        out = replace(out, buckets=_buckets(block["buckets"], join(path, "buckets"), problems))
    return out


def _phases(value: object, path: str, problems: Problems) -> tuple[Phase, ...]:
    if not isinstance(value, list):
        problems.error(path, f"expected a list of phases, e.g. [connect, tls, auth], got "
                             f"{describe(value)}")
        return ()
    out: list[Phase] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        try:
            phase = Phase(str(item))
        except ValueError:
            problems.error(where, f"{describe(item)} is not a phase; use one of {_PHASES}")
            continue
        if phase in out:
            problems.error(where, f"{phase.value} is listed twice; list it once")
            continue
        out.append(phase)
    return tuple(out)


def _buckets(value: object, path: str, problems: Problems) -> tuple[float, ...] | None:
    if not isinstance(value, list) or not value:
        shown = "an empty list" if value == [] else describe(value)
        problems.error(path, f"expected a list of upper bounds in seconds, e.g. "
                             f"[0.01, 0.1, 1], got {shown}")
        return None
    out: list[float] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        try:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise ValueError
            item = float(item)
        except (ValueError, OverflowError):
            item = math.nan
        if math.isnan(item):
            problems.error(where, f"expected a number of seconds, got {describe(value[index])}")
            return None
        if math.isinf(item):
            problems.error(where, "leave out +Inf; the last bucket is always +Inf")
            return None
        if item <= 0:
            problems.error(where, f"{item} is not above 0; bucket bounds are seconds, use a "
                                  f"positive number")
            return None
        if out and item <= out[-1]:
            problems.error(where, f"{item} does not exceed {out[-1]} before it; list the "
                                  f"bounds in increasing order, each once")
            return None
        out.append(item)
    return tuple(out)
