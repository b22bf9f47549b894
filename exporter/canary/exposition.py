"""The canary families with a relay label, as /metrics sample lines: each sender's and each
(relay, mailbox) pair's block is rendered once per change and joined at a scrape. Their
samples read the same in both formats (no _created), so one block serves both."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.metrics_core import Metric

from exporter.canary.metrics import pair_families, path_families, sender_families
from exporter.canary.store import CanarySnapshot, PairView, SenderView
from exporter.exposition import Spec, sample_blocks

__all__ = ["CanaryBlocks"]

_EMPTY = CanarySnapshot(senders={}, pairs={}, mailboxes={})
K = TypeVar("K")
V = TypeVar("V")


def _pair_and_path(snap: CanarySnapshot) -> Iterator[Metric]:
    yield from pair_families(snap)
    yield from path_families(snap)


SENDER_SPECS = tuple(Spec.of(m) for m in sender_families(_EMPTY))
PAIR_SPECS = tuple(Spec.of(m) for m in _pair_and_path(_EMPTY))


class _Cache(Generic[K, V]):
    """Blocks by key, each kept while the key's (immutable) view is the current one."""

    def __init__(self, render: Callable[[K, V], tuple[str, ...]]) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._cache: dict[K, tuple[V, tuple[str, ...]]] = {}

    def blocks(self, items: Iterable[tuple[K, V]]) -> list[tuple[str, ...]]:
        out = []
        with self._lock:
            old = self._cache
            fresh: dict[K, tuple[V, tuple[str, ...]]] = {}
            for key, view in items:
                entry = old.get(key)
                if entry is None or entry[0] is not view:
                    entry = (view, self._render(key, view))
                fresh[key] = entry
                out.append(entry[1])
            self._cache = fresh
        return out


def _sender(name: str, view: SenderView) -> tuple[str, ...]:
    one = CanarySnapshot(senders={name: view}, pairs={}, mailboxes={})
    return sample_blocks(list(sender_families(one)), openmetrics=False)


def _pair(key: tuple[str, str], view: PairView) -> tuple[str, ...]:
    one = CanarySnapshot(senders={}, pairs={key: view}, mailboxes={})
    return sample_blocks(list(_pair_and_path(one)), openmetrics=False)


class CanaryBlocks:
    """The sender and pair families of canary_families, from cached blocks."""

    def __init__(self) -> None:
        self._senders: _Cache[str, SenderView] = _Cache(_sender)
        self._pairs: _Cache[tuple[str, str], PairView] = _Cache(_pair)

    def families(self, snap: CanarySnapshot) -> Iterator[tuple[Spec, Sequence[str]]]:
        senders = self._senders.blocks(sorted(snap.senders.items()))
        pairs = self._pairs.blocks(sorted(snap.pairs.items()))
        for specs, blocks in ((SENDER_SPECS, senders), (PAIR_SPECS, pairs)):
            for index, spec in enumerate(specs):
                yield spec, [block[index] for block in blocks if block[index]]
