"""Canaries: message -> send -> mailbox watcher -> judge and delivery path -> ledger (in
flight) -> store -> metric families, driven by the manager."""

from __future__ import annotations

from exporter.canary.manager import CanaryManager
from exporter.canary.metrics import canary_families
from exporter.canary.path import DeliveryPath, path_to_dict
from exporter.canary.store import CanarySnapshot, CanaryStore

__all__ = [
    "CanaryManager",
    "CanarySnapshot",
    "CanaryStore",
    "DeliveryPath",
    "canary_families",
    "path_to_dict",
]
