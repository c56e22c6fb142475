"""Watch streams: a full listing on connect, then one event per placement change.

Each subscriber has a bounded queue. A subscriber that falls behind (queue full) or a
replica that restored a snapshot (its whole state replaced) gets ``RESET`` followed by a
fresh listing and ``SYNCED``, so a client cache can always resynchronise; it never
silently misses an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from registry.core.replica import ReplicaReady
from registry.v1 import registry_pb2 as pb

if TYPE_CHECKING:
    from registry.node.server import Node

QUEUE_LIMIT = 10_000
LISTING_EVENTS_PER_TURN = 256
_RESYNC = pb.WatchEvent(kind=pb.WatchEvent.KIND_RESET)


class _Subscriber:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[pb.WatchEvent] = asyncio.Queue(QUEUE_LIMIT)
        self.reset_pending = False

    def offer(self, event: pb.WatchEvent) -> None:
        if self.reset_pending:
            return  # a full listing is coming anyway
        if event.kind == pb.WatchEvent.KIND_RESET or self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)
            self.reset_pending = True
            return
        self.queue.put_nowait(event)


class WatchHub:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._subscribers: set[_Subscriber] = set()

    def on_ready(self, ready: ReplicaReady) -> None:
        state = self.node.driver.replica.state
        if ready.raft.snapshot is not None:
            state.track_changes = True  # a restored state starts a new journal
            state.drain_changes()
            for sub in self._subscribers:
                sub.offer(_RESYNC)
            return
        changed = state.drain_changes()
        if not changed or not self._subscribers:
            return
        index = state.applied_index
        for name in changed:
            event = self._event(name, index)
            for sub in self._subscribers:
                if name.startswith(sub.prefix):
                    sub.offer(event)

    def _event(self, name: str, index: int) -> pb.WatchEvent:
        service = self.node.service
        record = self.node.driver.replica.state.registered(name)
        if record is None:
            return pb.WatchEvent(
                kind=pb.WatchEvent.KIND_REMOVED, location=pb.Location(name=name), index=index
            )
        location = service._location(record) if record.holder else pb.Location(name=name)
        return pb.WatchEvent(kind=pb.WatchEvent.KIND_PLACED, location=location, index=index)

    async def _listing(self, prefix: str) -> AsyncIterator[pb.WatchEvent]:
        """Every live name under ``prefix``, built as it is sent and yielding to the loop
        now and then: building 100k events in one go stalled the node for most of a
        second. A name that changes meanwhile is also queued as a change event after
        the listing, and events carry whole locations, so the subscriber converges."""
        state = self.node.driver.replica.state
        index = state.applied_index
        yield pb.WatchEvent(kind=pb.WatchEvent.KIND_RESET, index=index)
        names = [n for n in sorted(state.names) if n.startswith(prefix)]
        for i, name in enumerate(names):
            if i % LISTING_EVENTS_PER_TURN == LISTING_EVENTS_PER_TURN - 1:
                await asyncio.sleep(0)
            event = self._event(name, index)
            if event.kind != pb.WatchEvent.KIND_REMOVED:
                yield event
        yield pb.WatchEvent(kind=pb.WatchEvent.KIND_SYNCED, index=index)

    async def subscribe(self, prefix: str) -> AsyncIterator[pb.WatchEvent]:
        sub = _Subscriber(prefix)
        self._subscribers.add(sub)
        try:
            async for event in self._listing(prefix):
                yield event
            while True:
                event = await sub.queue.get()
                if event.kind == pb.WatchEvent.KIND_RESET:
                    sub.reset_pending = False
                    async for listed in self._listing(prefix):
                        yield listed
                    continue
                yield event
        finally:
            self._subscribers.discard(sub)
