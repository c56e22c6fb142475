"""``WatchHub`` batching and its bounded queues, driven in-process: a real
``RegistryState`` (fed real commands), a real ``Directory`` over it, and real
``ReplicaReady`` values carrying the names each batch changed, as ``Replica.ready``
reports them. The wire itself is covered by tests/cluster/test_groups_watch.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from registry.core.commands import MemberUp, NameSpec, Register
from registry.core.messages import Ready
from registry.core.replica import ReplicaReady
from registry.core.state import RegistryState
from registry.node.directory import Directory
from registry.node.watch import LISTING_BATCH, QUEUE_LIMIT, WatchHub
from registry.v1 import registry_pb2 as pb

Kind = pb.WatchEvent.Kind


def _ready(changed: set[str], *, state_reset: bool = False) -> ReplicaReady:
    return ReplicaReady(
        incarnation=None,
        raft=Ready(),
        compaction=None,
        messages=(),
        effects=(),
        applied=(),
        changed=tuple(sorted(changed)),
        state_reset=state_reset,
    )


class _Registry:
    """A registry state and the hub watching it."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.hub = WatchHub(Directory(lambda: self.state, lease_holds=lambda: True))
        self._index = 0
        self.apply(MemberUp(node="n1", incarnation=1, address="127.0.0.1:1"))
        self.hub.on_ready(_ready(self.state.take_touched()))

    def apply(self, command: Register | MemberUp) -> None:
        self._index += 1
        assert self.state.apply(self._index, command).ok

    def register(self, names: list[str]) -> None:
        """Register ``names`` in one log entry and hand the hub that Ready."""
        self.apply(Register(specs=tuple(NameSpec(name=n, kind="k") for n in names)))
        self.hub.on_ready(_ready(self.state.take_touched()))

    def restore_snapshot(self) -> None:
        """What a snapshot install does: a new state object, and a reset Ready."""
        self.state = RegistryState.restore(self.state.snapshot())
        self.hub.on_ready(_ready(set(), state_reset=True))


async def _next(stream: AsyncIterator[pb.WatchEvents]) -> list[pb.WatchEvent]:
    """The next message's events; fails instead of hanging when none is due."""
    message = await asyncio.wait_for(anext(stream), timeout=5.0)
    assert 0 < len(message.events) <= LISTING_BATCH, len(message.events)
    return list(message.events)


async def _listing(stream: AsyncIterator[pb.WatchEvents]) -> tuple[list[str], int]:
    """Read RESET … SYNCED; return the listed names and how many messages carried them."""
    events = await _next(stream)
    messages = 1
    assert events[0].kind == Kind.KIND_RESET
    while events[-1].kind != Kind.KIND_SYNCED:
        events += await _next(stream)
        messages += 1
    inner = events[1:-1]
    assert all(e.kind == Kind.KIND_PLACED for e in inner)
    assert Kind.KIND_RESET not in [e.kind for e in inner]
    return [e.location.name for e in inner], messages


def test_a_listing_comes_in_few_messages_with_every_name_once() -> None:
    async def run() -> None:
        node = _Registry()
        names = [f"l/{i:05d}" for i in range(2000)]
        node.register(names)
        listed, messages = await _listing(node.hub.subscribe("l/"))
        assert sorted(listed) == names and len(set(listed)) == len(names)
        assert messages <= math.ceil(len(names) / LISTING_BATCH) + 1

    asyncio.run(run())


def test_one_ready_is_one_message_per_subscriber_with_only_its_names() -> None:
    async def run() -> None:
        node = _Registry()
        a, b, z = node.hub.subscribe("a/"), node.hub.subscribe("b/"), node.hub.subscribe("z/")
        for stream in (a, b, z):
            assert await _listing(stream) == ([], 1)
        node.register([f"{p}/{i}" for p in "abc" for i in range(10)])
        assert sorted(e.location.name for e in await _next(a)) == [f"a/{i}" for i in range(10)]
        assert sorted(e.location.name for e in await _next(b)) == [f"b/{i}" for i in range(10)]
        # z/ had nothing to learn: its next message is the next change under z/.
        node.register(["z/1"])
        assert [e.location.name for e in await _next(z)] == ["z/1"]

    asyncio.run(run())


def test_queued_batches_are_joined_up_to_the_message_size_in_order() -> None:
    async def run() -> None:
        node = _Registry()
        stream = node.hub.subscribe("")
        await _listing(stream)
        expected = [f"j/{i:04d}" for i in range(3 * LISTING_BATCH)]
        for start in range(0, len(expected), 100):
            node.register(expected[start : start + 100])
        received: list[str] = []
        while len(received) < len(expected):
            received += [e.location.name for e in await _next(stream)]
        assert received == expected

    asyncio.run(run())


def test_a_subscriber_that_falls_behind_gets_reset_and_a_fresh_listing() -> None:
    async def run() -> None:
        node = _Registry()
        stream = node.hub.subscribe("o/")
        await _listing(stream)
        # The subscriber reads nothing while more than QUEUE_LIMIT events are produced.
        names = [f"o/{i:05d}" for i in range(QUEUE_LIMIT + 1000)]
        for start in range(0, len(names), 1000):
            node.register(names[start : start + 1000])
            node.register([f"elsewhere/{start}"])  # not under o/: never queued
        # Nothing that was queued is sent: the next message opens a fresh listing.
        listed, _ = await _listing(stream)
        assert listed == names
        node.register(["o/after"])
        assert [e.location.name for e in await _next(stream)] == ["o/after"]

    asyncio.run(run())


def test_a_restored_snapshot_drops_the_queue_and_resends_the_listing() -> None:
    async def run() -> None:
        node = _Registry()
        stream = node.hub.subscribe("")
        await _listing(stream)
        node.register(["s/1", "s/2"])
        node.restore_snapshot()
        listed, _ = await _listing(stream)
        assert listed == ["s/1", "s/2"]

    asyncio.run(run())
