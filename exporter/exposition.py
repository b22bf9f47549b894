"""Exposition text written without prometheus_client, byte for byte as it writes it: family
headers, label values, sample values, and the join of pre-rendered blocks into chunks."""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

__all__ = ["CHUNK", "Spec", "esc", "gzip_chunks", "join_blocks", "num", "sample_blocks"]

# Lines (or blocks) joined per call: each join and encode is one C call holding the GIL,
# kept to well under a millisecond so the event loop's probes are not held up.
CHUNK = 512

_GO_FLOAT: Callable[[float], str] = floatToGoString


def num(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's float format: 1.0, 1.7e+09, +Inf);
    below a million (no NaN, no -Inf) that is Python's repr, without a function of its own."""
    if -math.inf < value < 1e6:
        return repr(float(value))
    return _GO_FLOAT(value)


def esc(value: str) -> str:
    """A label value as the exposition formats quote it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric family: its sample name (a counter's ends in _total), help and labels."""

    name: str
    help: str
    type: str  # gauge, counter or histogram
    labels: tuple[str, ...] = ()

    def gauge(self) -> GaugeMetricFamily:
        """An empty prometheus_client family of this spec, for registry collectors."""
        return GaugeMetricFamily(self.name, self.help, labels=list(self.labels))

    def counter(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.help, labels=list(self.labels))

    def histogram(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.help, labels=list(self.labels))

    @classmethod
    def of(cls, metric: Metric) -> Spec:
        """The spec of a prometheus_client family."""
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        return cls(name, metric.documentation, metric.type)

    def header(self, *, openmetrics: bool) -> str:
        """HELP and TYPE as prometheus_client writes them in either format."""
        if openmetrics:
            base = self.name.removesuffix("_total") if self.type == "counter" else self.name
            text = self.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            return f"# HELP {base} {text}\n# TYPE {base} {self.type}\n"
        text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {text}\n# TYPE {self.name} {self.type}\n"


class _Families:
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Sequence[Metric]:
        return self._families


_FAMILY_START = re.compile(r"(?<=\n)(?=# HELP )")
_OPENMETRICS: Callable[[_Families], bytes] = openmetrics_latest


def sample_blocks(families: Sequence[Metric], *, openmetrics: bool) -> tuple[str, ...]:
    """Each family's sample lines as prometheus_client writes them, without HELP and TYPE: one
    string per family (families without _created samples, which the text format moves)."""
    body = (_OPENMETRICS(_Families(families)) if openmetrics
            else generate_latest(_Families(families))).decode()
    # A raw newline is never inside a HELP text or a label value (both escape it), so each
    # family starts at a newline followed by its HELP line, and its TYPE line comes next.
    parts = _FAMILY_START.split(body.removesuffix("# EOF\n"))
    return tuple(part.split("\n", 2)[2] for part in parts if part)


def join_blocks(families: Iterable[tuple[Spec, Sequence[str]]], *,
                openmetrics: bool) -> Iterator[bytes]:
    """Each family's header and its blocks of sample lines, as UTF-8 chunks of at most
    CHUNK blocks each (a family with no samples keeps its header, as prometheus_client's)."""
    for spec, blocks in families:
        yield spec.header(openmetrics=openmetrics).encode()
        for start in range(0, len(blocks), CHUNK):
            yield "".join(blocks[start:start + CHUNK]).encode()


def gzip_chunks(chunks: Iterable[bytes], *, level: int = 1) -> list[bytes]:
    """One gzip stream of the chunks, compressed chunk by chunk (zlib lets other threads run
    while it works). Level 1: scrapes are large and repetitive, so speed wins over size."""
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [z.compress(chunk) for chunk in chunks]
    out.append(z.flush())
    return [part for part in out if part]
