"""Peer transport over grpc.aio: one client stream per destination, fire-and-forget.

Raft and the lease protocol are built for a lossy network, so the transport never
retries a message: a full queue drops the oldest, a broken stream is reopened with
backoff, and whatever was in flight is gone. Keepalive pings notice a silent network
(nftables ``drop``) within about two seconds instead of TCP's minutes.

It also keeps, per peer, when a message last arrived from it: ``reachable()`` is what the
node reports when it refuses a write for lack of quorum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc
import grpc.aio

from registry.core.replica import PeerMessage
from registry.v1 import peer_pb2, peer_pb2_grpc
from registry.wire.codec import peer_from_pb, peer_to_pb

log = logging.getLogger("registry.transport")

QUEUE_LIMIT = 4096
MAX_BACKOFF_S = 0.25
"""Longest wait between stream attempts. Short, because a peer that restarts is back
within a second or two and the first messages it needs (a pre-vote, a member
heartbeat's ack) are time-critical; an attempt to a dead peer on loopback or a LAN is a
refused connection, which costs next to nothing."""
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.http2.min_ping_interval_without_data_ms", 500),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


class _Link:
    """The stream to one peer."""

    def __init__(self, node: str, peer: str, resolve: Callable[[str], str | None]) -> None:
        self.peer = peer
        self._node = node
        self._resolve = resolve
        self._queue: asyncio.Queue[peer_pb2.PeerEnvelope | None] = asyncio.Queue(QUEUE_LIMIT)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{peer}")
        self.dropped = 0
        self.broken = 0
        """Streams that ended (failed to connect, or broke) — for tests and debugging."""

    def send(self, envelope: peer_pb2.PeerEnvelope) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # the oldest is the least useful
            self.dropped += 1
        self._queue.put_nowait(envelope)

    @staticmethod
    async def _envelopes(
        queue: asyncio.Queue[peer_pb2.PeerEnvelope | None],
    ) -> AsyncIterator[peer_pb2.PeerEnvelope]:
        # grpc.aio keeps consuming a request iterator after its RPC has failed: the
        # iterator must belong to one stream only, and end when told (None), or each
        # broken stream leaves a reader that steals, and loses, one later message.
        while (envelope := await queue.get()) is not None:
            yield envelope

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            address = self._resolve(self.peer)
            if address is None:
                await asyncio.sleep(0.5)  # unknown address: wait for the view to name it
                continue
            try:
                async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
                    stub = peer_pb2_grpc.PeerStub(channel)
                    await stub.Stream(self._envelopes(self._queue))
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.debug("stream %s→%s broke: %s", self._node, self.peer, exc.code())
            except Exception:
                log.exception("stream %s→%s failed", self._node, self.peer)
            self.broken += 1
            # What queued up while the stream was down is stale by now: the next stream
            # gets a fresh queue, and this one only the end marker for its reader.
            ended, self._queue = self._queue, asyncio.Queue(QUEUE_LIMIT)
            while not ended.empty():
                ended.get_nowait()
            ended.put_nowait(None)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class PeerTransport(peer_pb2_grpc.PeerServicer):
    def __init__(
        self,
        node: str,
        resolve: Callable[[str], str | None],
        deliver: Callable[[PeerMessage], None],
    ) -> None:
        self._node = node
        self._resolve = resolve
        self._deliver = deliver
        self._links: dict[str, _Link] = {}
        self._heard: dict[str, float] = {}

    def send(self, messages: list[PeerMessage]) -> None:
        for msg in messages:
            if msg.dst == self._node:
                self._deliver(msg)
                continue
            link = self._links.get(msg.dst)
            if link is None:
                link = self._links[msg.dst] = _Link(self._node, msg.dst, self._resolve)
            link.send(peer_to_pb(msg))

    def reachable(self, peers: list[str], within: float) -> list[str]:
        """The peers (of ``peers``) heard from within ``within`` seconds, plus us."""
        now = time.monotonic()
        return [p for p in peers if p == self._node or now - self._heard.get(p, -1e9) <= within]

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        self._links.clear()

    # -- the servicer ------------------------------------------------------------------

    async def Stream(
        self,
        request_iterator: AsyncIterator[peer_pb2.PeerEnvelope],
        context: grpc.aio.ServicerContext[peer_pb2.PeerEnvelope, peer_pb2.PeerStreamEnd],
    ) -> peer_pb2.PeerStreamEnd:
        async for envelope in request_iterator:
            msg = peer_from_pb(envelope)
            if msg is None or msg.dst != self._node:
                continue
            self._heard[msg.src] = time.monotonic()
            self._deliver(msg)
        return peer_pb2.PeerStreamEnd()
