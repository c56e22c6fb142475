"""The shell simulator's pieces: virtual time, the simulated disk, the Ready loop's ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from registry.core.command_types import NameSpec, Register
from registry.core.messages import (
    ConfState,
    Entry,
    HardState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from registry.core.replica import ReplicaReady
from registry.core.timing import Timing
from registry.node.ready_loop import ReadyLoop
from registry.node.storage import FileStorage
from registry.node.storage_protocol import Storage
from registry.sim.shell.disk import SimDisk
from registry.sim.shell.vloop import Deadlock, VirtualLoop
from tests.sim_shell.one_node import one_node_replica

T = TypeVar("T")


def _run(loop: VirtualLoop, coro: Awaitable[T]) -> T:
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_time_jumps_to_the_next_timer() -> None:
    loop = VirtualLoop()

    async def main() -> float:
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    assert _run(loop, main()) == pytest.approx(3600, abs=1e-5)


def test_persist_runs_after_the_fsync_delay_and_not_after_a_crash() -> None:
    loop = VirtualLoop(executor_delay=lambda: 0.004)
    disk = SimDisk()
    ready = Ready(hard_state=HardState(term=3, vote="n2"), entries=(Entry(term=3, index=1),))

    async def main() -> tuple[float, int, int]:
        start = loop.time()
        await asyncio.to_thread(disk.persist, incarnation=1, ready=ready, compaction=None)
        took, stored = loop.time() - start, disk.persists
        crashed = loop.create_task(
            asyncio.to_thread(disk.persist, incarnation=2, ready=Ready(), compaction=None)
        )
        await asyncio.sleep(0.001)
        crashed.cancel()  # the node dies inside the fsync
        await asyncio.sleep(0.01)
        return took, stored, disk.persists

    took, stored, after = _run(loop, main())
    assert took == pytest.approx(0.004, abs=2e-6)
    assert stored == after == 1
    loaded = disk.load()
    assert loaded.incarnation == 1  # the cancelled write never reached the disk
    assert loaded.persisted.hard_state == HardState(term=3, vote="n2")
    assert loaded.persisted.entries == (Entry(term=3, index=1),)


def test_a_loop_with_nothing_to_do_is_a_deadlock() -> None:
    loop = VirtualLoop()
    with pytest.raises(Deadlock):
        _run(loop, loop.create_future())


def test_the_simulated_disk_keeps_what_file_storage_keeps(tmp_path: Path) -> None:
    """One sequence of Readies (a truncation, a compaction, a new incarnation) into both
    ``Storage`` implementations: a restart finds the same thing in each."""
    conf = ConfState(voters=frozenset({"n1", "n2", "n3"}))
    snap = Snapshot(meta=SnapshotMeta(index=2, term=3, conf=conf), data=b"state@2")
    steps: list[tuple[int | None, Ready, Snapshot | None]] = [
        (1, Ready(hard_state=HardState(term=3, vote="n1"), entries=_entries(3, 1, 2, 3)), None),
        (None, Ready(hard_state=HardState(term=4, commit=2), entries=_entries(4, 3, 4)), None),
        (2, Ready(), snap),
    ]
    with FileStorage(tmp_path) as files:
        files.load()
        disk = SimDisk()
        stores: list[Storage] = [files, disk]
        for incarnation, ready, compaction in steps:
            for store in stores:
                store.persist(incarnation=incarnation, ready=ready, compaction=compaction)
        on_file, simulated = files.load(), disk.load()
    assert simulated.persisted == on_file.persisted
    assert simulated.incarnation == on_file.incarnation == 2
    assert on_file.persisted.entries == _entries(4, 3, 4)


def _entries(term: int, *indexes: int) -> tuple[Entry, ...]:
    return tuple(Entry(term=term, index=i, data=f"e{i}".encode()) for i in indexes)


def test_a_clock_on_a_tick_boundary_ticks() -> None:
    """At t0 = 0 and 50 ms ticks, 2.15 / 0.05 rounds to 42.99…: the 43rd tick is due (the
    loop waits for exactly that boundary), so catch_up must take it, or ``run`` would go
    round without waiting or ticking."""
    timing = Timing().validate()
    replica = one_node_replica(timing)
    now = [0.0]
    loop: ReadyLoop[object] = ReadyLoop(
        replica,
        SimDisk(),
        tick=0.05,
        clock=lambda: now[0],
        send=lambda msgs: None,
        apply=lambda ready: None,
        advanced=lambda: None,
        feed=lambda item: None,
        on_turn=lambda: None,
    )
    now[0] = 2.15
    assert int((now[0] - loop.t0) / loop.tick) == 42  # the float trap
    loop.catch_up()
    assert loop.ticks == 43
    assert loop.t0 + (loop.ticks + 1) * loop.tick - now[0] > 0  # run will wait next


def test_polling_without_waiting_is_a_livelock() -> None:
    loop = VirtualLoop()

    async def poll() -> None:
        while True:  # the bug: waits for a condition without letting time pass
            await asyncio.sleep(0)

    with pytest.raises(Deadlock, match="livelock"):
        _run(loop, poll())


def test_a_long_catch_up_keeps_ticking() -> None:
    """Rule 9: applying a long committed backlog (a node joining behind 100k names) is
    many Readies, each bounded in bytes, and the loop ticks between them instead of
    handling them all in one turn (the node would neither tick nor hear its peers).
    Every entry is still applied, once and in order."""
    timing = Timing().validate()
    replica = one_node_replica(timing, max_committed_bytes_per_ready=64 * 1024)
    vloop = VirtualLoop(executor_delay=lambda: 1e-6)
    now = [0.0]
    applied: list[int] = []
    ticks_at_apply: list[int] = []
    target = [0]

    def apply(ready: ReplicaReady) -> None:
        now[0] += 0.03  # each Ready costs 30 ms of this node's time
        batch = [a.index for a in ready.applied if isinstance(a.command, Register)]
        if batch:
            applied.extend(batch)
            ticks_at_apply.append(loop.ticks)
        if target[0] and applied and applied[-1] >= target[0]:
            loop.stopping = True

    loop: ReadyLoop[object] = ReadyLoop(
        replica,
        SimDisk(),
        tick=timing.tick,
        clock=lambda: now[0],
        send=lambda msgs: None,
        apply=apply,
        advanced=lambda: None,
        feed=lambda item: None,
        on_turn=lambda: None,
    )

    async def main() -> None:
        while replica.view().role is not Role.LEADER:
            now[0] += timing.tick
            loop.catch_up()
            await loop.drain()
        specs = [NameSpec(name=f"backlog/{i:06}", kind="echo") for i in range(40_000)]
        indexes = [
            replica.propose(Register(specs=tuple(specs[b : b + 1000])))
            for b in range(0, len(specs), 1000)
        ]
        target[0] = indexes[-1]
        await loop.run(asyncio.Queue())

    _run(vloop, main())
    assert applied == sorted(set(applied)) and len(applied) == 40
    assert len(ticks_at_apply) > 4, "the backlog came in a few big Readies"
    assert ticks_at_apply[-1] > ticks_at_apply[0], "no tick while the backlog was applied"
