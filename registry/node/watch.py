"""Watch streams: a full listing on connect, then the placement changes, in batches.

One wire message (``WatchEvents``) carries up to ``LISTING_BATCH`` events: the listing
goes out as ``RESET``, the names, ``SYNCED`` cut into such batches; the names one
applied ``Ready`` changed go out together (only those under the subscriber's prefix; a
subscriber with nothing to learn gets no message). Sending thousands of names one
message each cost seconds of CPU on both ends; a batch costs about one message's
overhead.

Each subscriber has a queue bounded in *events* (``QUEUE_LIMIT`` across its queued
batches). A subscriber that falls behind (the bound would be passed) or a replica that
restored a snapshot (its whole state replaced) gets its queue dropped and ``RESET``
followed by a fresh listing and ``SYNCED``, so a client cache can always resynchronise;
it never silently misses an event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence

from registry.core.replica import ReplicaReady
from registry.node.directory import Directory
from registry.v1 import registry_pb2 as pb

QUEUE_LIMIT = 10_000
"""Events a subscriber may have queued (across batches) before it is resynchronised."""
LISTING_BATCH = 512
"""Events per wire message; the listing yields to the event loop after each, so that
building a 100k-name listing never stalls the node."""


class _Subscriber:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._batches: deque[Sequence[pb.WatchEvent]] = deque()
        self._queued = 0  # events across self._batches
        self._resync = False  # the queue was dropped: a full listing is due
        self._wakeup = asyncio.Event()

    @property
    def queued(self) -> int:
        return self._queued

    def offer(self, batch: Sequence[pb.WatchEvent]) -> None:
        """Queue one Ready's events for this subscriber (the caller filtered them)."""
        if self._resync:
            return  # a full listing is coming anyway
        if self._queued + len(batch) > QUEUE_LIMIT:
            self.resync()
            return
        self._batches.append(batch)
        self._queued += len(batch)
        self._wakeup.set()

    def resync(self) -> None:
        """Drop what is queued; the next ``take`` asks for a fresh listing."""
        self._batches.clear()
        self._queued = 0
        self._resync = True
        self._wakeup.set()

    async def take(self) -> list[pb.WatchEvent] | None:
        """The next events to send, in order, at most ``LISTING_BATCH`` of them (small
        queued batches are joined); ``None`` when a fresh listing is due instead."""
        while not self._resync and not self._batches:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._resync:
            self._resync = False  # changes from now on queue behind the listing
            return None
        events: list[pb.WatchEvent] = []
        while self._batches and len(events) < LISTING_BATCH:
            batch = self._batches.popleft()
            room = LISTING_BATCH - len(events)
            if len(batch) > room:
                self._batches.appendleft(batch[room:])
                batch = batch[:room]
            events.extend(batch)
        self._queued -= len(events)
        return events


class WatchHub:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._subscribers: set[_Subscriber] = set()

    def on_ready(self, ready: ReplicaReady) -> None:
        if ready.state_reset:
            for sub in self._subscribers:
                sub.resync()
            return
        if not ready.changed or not self._subscribers:
            return
        index = self._directory.registry.applied_index
        events = [(name, self._event(name, index)) for name in ready.changed]
        everything = [event for _, event in events]
        for sub in self._subscribers:
            if not sub.prefix:
                sub.offer(everything)  # shared: queued batches are never mutated
                continue
            mine = [event for name, event in events if name.startswith(sub.prefix)]
            if mine:
                sub.offer(mine)

    def _event(self, name: str, index: int) -> pb.WatchEvent:
        record = self._directory.registry.registered(name)
        if record is None:
            return pb.WatchEvent(
                kind=pb.WatchEvent.KIND_REMOVED, location=pb.Location(name=name), index=index
            )
        location = self._directory.location(record) if record.holder else pb.Location(name=name)
        return pb.WatchEvent(kind=pb.WatchEvent.KIND_PLACED, location=location, index=index)

    async def _listing(self, prefix: str) -> AsyncIterator[pb.WatchEvents]:
        """Every live name under ``prefix`` between ``RESET`` and ``SYNCED``, in batches
        built as they are sent, yielding to the loop after each: building 100k events in
        one go stalled the node for most of a second. A name that changes meanwhile is
        also queued as a change after the listing, and events carry whole locations, so
        the subscriber converges."""
        state = self._directory.registry
        index = state.applied_index
        names = list(state.names_with_prefix(prefix))
        batch = pb.WatchEvents()
        batch.events.add(kind=pb.WatchEvent.KIND_RESET, index=index)
        for name in names:
            if len(batch.events) >= LISTING_BATCH:
                yield batch
                await asyncio.sleep(0)
                batch = pb.WatchEvents()
            event = self._event(name, index)
            if event.kind != pb.WatchEvent.KIND_REMOVED:
                batch.events.append(event)
        if len(batch.events) >= LISTING_BATCH:
            yield batch
            batch = pb.WatchEvents()
        batch.events.add(kind=pb.WatchEvent.KIND_SYNCED, index=index)
        yield batch

    async def subscribe(self, prefix: str) -> AsyncIterator[pb.WatchEvents]:
        sub = _Subscriber(prefix)
        self._subscribers.add(sub)
        try:
            async for listed in self._listing(prefix):
                yield listed
            while True:
                events = await sub.take()
                if events is None:  # fell behind, or the replica restored a snapshot
                    async for listed in self._listing(prefix):
                        yield listed
                    continue
                yield pb.WatchEvents(events=events)
        finally:
            self._subscribers.discard(sub)
