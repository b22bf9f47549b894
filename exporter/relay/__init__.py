"""Relay probes: probe -> scheduler -> result store -> metric families, and the text and JSON
reports of the probe command."""

from __future__ import annotations

from exporter.relay.exposition import RelayBlocks
from exporter.relay.history import History, PastProbe
from exporter.relay.metrics import probe_families, relay_families
from exporter.relay.multitarget import TargetProber
from exporter.relay.probe import probe_relay
from exporter.relay.report import format_table, iso_time, result_to_dict, status_word
from exporter.relay.result import RelayResult
from exporter.relay.scheduler import ProbeFn, Scheduler
from exporter.relay.store import RelayInfo, RelayView, ResultStore, Snapshot

__all__ = [
    "History",
    "PastProbe",
    "ProbeFn",
    "RelayBlocks",
    "RelayInfo",
    "RelayResult",
    "RelayView",
    "ResultStore",
    "Scheduler",
    "Snapshot",
    "TargetProber",
    "format_table",
    "iso_time",
    "probe_families",
    "probe_relay",
    "relay_families",
    "result_to_dict",
    "status_word",
]
