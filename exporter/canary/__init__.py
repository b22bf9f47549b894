"""Canaries: message -> send -> mailbox watcher -> judge and delivery path -> ledger (in
flight) -> store -> metric families, driven by the manager."""

from __future__ import annotations

from exporter.canary.exposition import CanaryBlocks
from exporter.canary.manager import CanaryManager
from exporter.canary.metrics import canary_families, mailbox_families
from exporter.canary.path import DeliveryPath, path_to_dict
from exporter.canary.store import CanarySnapshot, CanaryStore

__all__ = [
    "CanaryBlocks",
    "CanaryManager",
    "CanarySnapshot",
    "CanaryStore",
    "DeliveryPath",
    "canary_families",
    "mailbox_families",
    "path_to_dict",
]
