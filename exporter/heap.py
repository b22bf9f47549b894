"""The garbage collector at fleet scale: a config for 10,000 relays is hundreds of thousands
of objects that live as long as the config does. Left in the collector's oldest generation,
every full collection walks them all (0.2 to 0.5 s with the event loop stopped, several times
a minute). Once a config is adopted its objects are frozen (``gc.freeze``), so collections
walk only what probes create, and young collections run every 20,000 allocations instead of
700, because nearly all of a probe's objects die young by reference counting anyway."""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """After a config is adopted: collect what the previous one left (once, at start-up or a
    reload), then freeze every object that is left, the new config's among them."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
