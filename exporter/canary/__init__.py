"""Canaries: message -> send -> mailbox watcher -> judge -> ledger (in flight) -> store ->
metric families, driven by the manager."""

from __future__ import annotations

from exporter.canary.manager import CanaryManager
from exporter.canary.metrics import canary_families
from exporter.canary.store import CanarySnapshot, CanaryStore

__all__ = [
    "CanaryManager",
    "CanarySnapshot",
    "CanaryStore",
    "canary_families",
]
