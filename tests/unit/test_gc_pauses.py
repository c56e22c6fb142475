"""The GC pause watcher: every collection is timed; a long one is logged."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
from prometheus_client import CollectorRegistry, Histogram

from registry.node.gc_pauses import BulkFreezer, GcPauses


def _count(registry: CollectorRegistry, generation: str) -> float:
    value = registry.get_sample_value("pauses_seconds_count", {"generation": generation})
    return value or 0.0


def test_collections_are_timed_and_long_ones_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    histogram = Histogram("pauses_seconds", "test", ["generation"], registry=registry)
    pauses = GcPauses(histogram, warn_after_s=0.0)  # every pause counts as long here
    pauses.install()
    try:
        with caplog.at_level(logging.WARNING, logger="registry.node"):
            gc.collect(2)
    finally:
        pauses.uninstall()
    assert _count(registry, "2") >= 1
    assert any("garbage collection (generation 2)" in r.getMessage() for r in caplog.records)
    before = _count(registry, "2")
    gc.collect(2)
    assert _count(registry, "2") == before, "uninstalled: no longer observed"
    assert pauses._on_gc not in gc.callbacks


def test_the_bulk_is_frozen_once_it_grew_by_every() -> None:
    """A full collection must not rescan registered names: after ``every`` new ones
    they are frozen (what is frozen is never scanned again)."""
    freezer = BulkFreezer(every=100)
    before = gc.get_freeze_count()
    try:
        bulk = [{"name": i} for i in range(50)]  # tracked objects, like records
        assert not freezer.grew(len(bulk))
        assert gc.get_freeze_count() == before, "below every: nothing frozen"
        bulk += [{"name": i} for i in range(50, 150)]
        assert freezer.grew(len(bulk))
        assert gc.get_freeze_count() >= before + len(bulk)
        assert not freezer.grew(len(bulk) + 10), "the next freeze waits for every more"
        freezer.rebuilt()
        assert freezer.grew(len(bulk)), "a restored bulk is frozen at once"
        assert freezer.freezes == 2
    finally:
        gc.unfreeze()


class _Cyclic:
    """An object in a reference cycle with itself (dies only by a collection)."""

    def __init__(self) -> None:
        self.me = self


def test_a_host_freezer_thaws_a_shrunk_bulk_so_its_dead_cycles_are_reclaimed() -> None:
    """Worker hosts freeze their activations too, and those may hold cycles (user
    objects): once the bulk shrank by ``every``, what was frozen goes back to the
    collector, and a dead cycle frozen earlier is reclaimed."""
    freezer = BulkFreezer(every=100, thaw=True)
    try:
        bulk = [_Cyclic() for _ in range(150)]
        probe = weakref.ref(bulk[0])
        assert freezer.grew(len(bulk))
        bulk.clear()  # every activation stopped: its cycles are garbage, but frozen
        gc.collect()
        assert probe() is not None, "frozen objects are not collected"
        assert not freezer.grew(60), "shrank by less than every: still frozen"
        assert freezer.thaws == 0
        assert not freezer.grew(0)
        assert freezer.thaws == 1
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert probe() is None, "thawed: the dead cycle was reclaimed"
    finally:
        gc.unfreeze()


def test_the_control_processs_freezer_does_not_thaw() -> None:
    """The control process's bulk (name records) holds no cycles: it never pays a full
    rescan to thaw it."""
    freezer = BulkFreezer(every=100)
    try:
        assert freezer.grew(150)
        count = gc.get_freeze_count()
        assert not freezer.grew(0)
        assert freezer.thaws == 0
        assert gc.get_freeze_count() == count
    finally:
        gc.unfreeze()


def test_a_host_freezer_does_not_freeze_garbage_that_reached_the_oldest_generation() -> None:
    """Starting an activation leaves cycles that die only after they were promoted; a
    freeze after a young collection pinned them for good (host RSS per idle activation
    2.6 -> 7.8 KB at 100k). The host's freezer collects every generation first."""
    freezer = BulkFreezer(every=100, thaw=True)
    try:
        transient = _Cyclic()
        probe = weakref.ref(transient)
        gc.collect()  # survives: promoted to the oldest generation
        del transient  # now garbage there, which no young collection finds
        assert probe() is not None
        assert freezer.grew(150)
        assert probe() is None, "collected before the freeze, not frozen with the bulk"
    finally:
        gc.unfreeze()
