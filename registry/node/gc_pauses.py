"""How long CPython's garbage collector stops the node.

A node is one event loop: while a collection runs, no heartbeat is sent or answered.
With many activations (a few objects each) a full collection can take long enough to
cost a lease or an election, so every pause goes into a histogram and a long one is
logged — it is the first thing to look at when a busy node fences.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("registry.node")

WARN_AFTER_S = 0.1
"""A pause this long is a tenth of the lan lease: worth a warning."""


class GcPauses:
    def __init__(self, histogram: Histogram, *, warn_after_s: float = WARN_AFTER_S) -> None:
        self.histogram = histogram
        self.warn_after_s = warn_after_s
        self._started = 0.0

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        paused = time.perf_counter() - self._started
        generation = int(info.get("generation", -1))
        self.histogram.labels(str(generation)).observe(paused)
        if paused >= self.warn_after_s:
            log.warning(
                "garbage collection (generation %d) stopped the node for %.0f ms "
                "(%d objects collected)",
                generation,
                paused * 1000,
                int(info.get("collected", 0)),
            )


GC_THRESHOLDS = (50_000, 2, 10)
"""CPython's default (700, 10, 10) runs a young collection every 700 allocations; a node
holds a few objects per registered name, and with 100k names the resulting collections
stalled the event loop long enough to cost heartbeats (a snapshot took 0.9 s instead of
0.4 s). The middle value bounds a generation-1 pause: it scans the survivors of that many
young collections, and with 20 a node holding 100k activations paused ~300 ms every
1.5 s (registry_gc_pause_seconds) — elections and fences followed. The total work is the
same either way (each survivor is scanned once in generation 1), only in shorter bits."""


def tune_gc() -> None:
    """Set the node's collection thresholds, once start-up is done."""
    gc.freeze()  # what start-up built lives as long as the process: never rescan it
    gc.set_threshold(*GC_THRESHOLDS)


FREEZE_EVERY = 5_000
"""``BulkFreezer``: how many new names (or activations) between two freezes."""


class BulkFreezer:
    """Moves a growing bulk out of the collector's sight (``gc.freeze()``), so full
    collections do not rescan it.

    A full (generation-2) collection scans every tracked object that is not frozen: with
    100k names a replica holds millions (records, specs, tuples), and each full
    collection stopped the node for 0.3-0.6 s — a heartbeat lost, elections and fences
    (``registry bench --names 100000``). Registered names live until unregistered and die
    by reference count (records hold no cycles), so scanning them finds nothing.

    Rules: ``grew(size)`` is called with the current size of the bulk (names held, live
    activations) after it may have changed; once it grew by ``every`` since the last
    freeze, a young collection (generations 0 and 1: only recent objects, cheap) clears
    what is already garbage, then ``gc.freeze()`` (O(1): it moves lists) freezes the
    survivors. Freezes happen only while the bulk grows, ``every`` items apart, so a
    node at rest never freezes: what it frees in cycles is collected as before. The
    cost is that a cycle alive at a freeze and dropped later is never reclaimed; that is
    bounded by the number of freezes, and the registry's own bulk has no cycles."""

    def __init__(self, every: int = FREEZE_EVERY, *, thaw: bool = False) -> None:
        self.every = every
        self.frozen_at = 0
        self.freezes = 0
        self.thaw = thaw
        """Worker hosts: their bulk (activations, user objects) may hold cycles, so once
        it shrank by ``every`` below its size at the last freeze, ``gc.unfreeze()`` hands
        what was frozen back to the collector (one full scan then reclaims what died)."""
        self.thaws = 0
        self._peak = 0
        """The bulk's size at the last freeze (0: nothing frozen since the last thaw)."""

    def rebuilt(self) -> None:
        """The whole bulk was replaced (a snapshot restored): freeze it at the next
        ``grew`` however large it is."""
        self.frozen_at = -self.every

    def grew(self, size: int) -> bool:
        """Freeze if ``size`` is ``every`` past the last freeze; say whether it did."""
        if 0 <= size < self.frozen_at:
            self.frozen_at = size  # the bulk shrank: count growth from here
            if self.thaw and self._peak and size <= self._peak - self.every:
                gc.unfreeze()
                self.thaws += 1
                self._peak = 0
            return False
        if size - self.frozen_at < self.every:
            return False
        self.frozen_at = self._peak = size
        self.freezes += 1
        # Thawing freezers (worker hosts) collect every generation first: what is not
        # frozen yet is only the bulk added since the last freeze, and starting an
        # activation leaves cyclic garbage that reaches generation 2 before it dies;
        # frozen, it is never reclaimed (host RSS per idle activation 2.7 -> 7.8 KB).
        gc.collect(2 if self.thaw else 1)
        gc.freeze()
        return True
