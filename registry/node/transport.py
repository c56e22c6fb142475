"""Peer transport over grpc.aio: one client stream per destination, fire-and-forget.

Raft and the lease protocol are built for a lossy network, so the transport never
retries a message: a full queue drops the oldest, a broken stream is reopened with
backoff, and whatever was in flight is gone. Keepalive pings notice a silent network
(nftables ``drop``) within about two seconds instead of TCP's minutes.

It also keeps, per peer, when a message last arrived from it: ``reachable()`` is what the
node reports when it refuses a write for lack of quorum.

Trust (DESIGN G8): the peer server listens on a port of its own (``peer_listen``), with
mTLS when configured (``registry.node.peer_tls``). Every stream carries the cluster id
in its metadata both ways (``registry-cluster-id``); a stream from another cluster is
refused by the server (``FAILED_PRECONDITION``) and a server of another cluster is left by
the client, each with a rate-limited log line; the peer protocol version travels and is
checked the same way (``registry.node.peer_protocol``). Each decoded message then passes
``registry.node.peer_guard`` — its ``src`` must be the stream's authenticated identity —
before it reaches the core.

Priority: heartbeats, votes, their answers, append acknowledgements, ReadIndex and
the member lease messages go in an *urgent* lane that is written before anything else
queued for that peer (``URGENT``); appends, snapshots and forwarded writes keep their
order in the other. A heartbeat queued behind megabytes of appends to a follower that
is catching up arrived too late to keep the leader's Raft lease (0.3 s on lan), and
without it the leader acknowledges no member heartbeat: at 100k names on 2 cores every
member lease lapsed together, dozens of times a minute (issue 13). Raft is safe under
any reordering (a heartbeat only commits up to what the follower already matched), and
the lease messages carry their own sequence numbers and indexes.

Coalescing: what is queued for a peer when its stream is ready to write goes out as one
``PeerBatch`` envelope (up to ``BATCH_MAX`` messages and about ``BATCH_BYTES``), if the
peer's server said it reads batches (``registry-peer-features``); a Ready's appends,
heartbeats and member acks to one peer then cost one gRPC write, not one each. The
receiver unpacks a batch and runs every message in it through the same checks as a
single one; a batch inside a batch is refused as undecodable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import grpc
import grpc.aio

from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import Message, MessageType
from registry.core.replica import Forward, PeerMessage
from registry.node import peer_protocol
from registry.node.peer_guard import PeerView, RefusalLog, SnapshotGuard, check, describe
from registry.node.peer_rtt import RoundTrips
from registry.node.peer_tls import PeerTls, channel_options, stream_identity
from registry.v1 import peer_pb2, peer_pb2_grpc
from registry.wire.codec import decode_peer, encode_peer

log = logging.getLogger("registry.transport")

QUEUE_LIMIT = 4096
"""Messages queued per peer and lane; a full lane drops its oldest."""
URGENT = frozenset(
    {
        MessageType.PRE_VOTE,
        MessageType.PRE_VOTE_RESP,
        MessageType.VOTE,
        MessageType.VOTE_RESP,
        MessageType.APPEND_RESP,
        MessageType.HEARTBEAT,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX,
        MessageType.READ_INDEX_RESP,
    }
)
"""Raft messages of the urgent lane: small, and late ones cost leases and elections."""
BATCH_MAX = 64
"""Messages per ``PeerBatch`` at most."""
BATCH_BYTES = 1 << 20
"""A batch stops growing past this many (estimated) bytes; a message bigger than it
goes alone, so a batch never nears the 64 MiB message limit."""
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


CLUSTER_KEY = "registry-cluster-id"
HTTP_KEY = "registry-http"
"""Stream metadata, both ways: the sender's status page address (host:port), so every
status page can link to the others'. Informational only; a malformed value is ignored."""
PEER_KEY = "registry-peer-address"
"""Stream metadata, client to server: the sender's peer port as others dial it. A node
that missed a member change (cut off while it was made) knows neither the new member nor
its address; this lets it answer that member's traffic (``learned_address``). The address
is only ever dialled with TLS verifying the member's own certificate, so a wrong one
reaches nobody else."""
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}")
MISMATCH = "cluster id mismatch"
_TLS_FAILURE = re.compile(r"handshake|verification|certificate|ssl", re.IGNORECASE)


def _cluster_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == CLUSTER_KEY:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""


_Queued = tuple[peer_pb2.PeerEnvelope, int]
"""An envelope and its estimated size in bytes."""


def is_urgent(msg: PeerMessage) -> bool:
    if isinstance(msg, Message):
        return msg.type in URGENT
    return isinstance(msg, (MemberHeartbeat, MemberAck))


class _Lanes:
    """What waits to be written to one stream: the urgent lane first, then the rest,
    each in order. ``close`` ends the stream's reader once it has nothing left."""

    def __init__(self) -> None:
        self._urgent: collections.deque[_Queued] = collections.deque()
        self._bulk: collections.deque[_Queued] = collections.deque()
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: _Queued, *, urgent: bool) -> None:
        lane = self._urgent if urgent else self._bulk
        if len(lane) >= QUEUE_LIMIT:
            lane.popleft()  # the oldest is the least useful
            self.dropped += 1
        lane.append(item)
        self._wake.set()

    def empty(self) -> bool:
        return not self._urgent and not self._bulk

    def peek(self) -> _Queued:
        return self._urgent[0] if self._urgent else self._bulk[0]

    def pop(self) -> _Queued:
        return self._urgent.popleft() if self._urgent else self._bulk.popleft()

    async def next(self) -> _Queued | None:
        """The next item to write, waiting for one; ``None`` once closed."""
        while self.empty():
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self.pop()

    def close(self) -> None:
        self._urgent.clear()
        self._bulk.clear()
        self.closed = True
        self._wake.set()


class _Link:
    """The stream to one peer."""

    def __init__(self, owner: PeerTransport, peer: str) -> None:
        self.peer = peer
        self._owner = owner
        self._node = owner.node
        self._resolve = owner.address_of
        self._lanes = _Lanes()
        self._dropped_before = 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{peer}")
        self.broken = 0
        """Streams that ended (failed to connect, or broke) — for tests and debugging."""
        self.writes = 0
        """Envelopes written (a batch counts once) — for tests and debugging."""

    @property
    def dropped(self) -> int:
        """Messages dropped because a lane was full — for tests and debugging."""
        return self._dropped_before + self._lanes.dropped

    def send(self, envelope: peer_pb2.PeerEnvelope, size: int, *, urgent: bool = False) -> None:
        self._lanes.put((envelope, size), urgent=urgent)

    async def _envelopes(
        self, lanes: _Lanes, batches: asyncio.Event
    ) -> AsyncIterator[peer_pb2.PeerEnvelope]:
        # grpc.aio keeps consuming a request iterator after its RPC has failed: the
        # iterator must belong to one stream only, and end when told (None), or each
        # broken stream leaves a reader that steals, and loses, one later message.
        # ``batches`` is set once the server said it reads batches.
        while True:
            first = await lanes.next()
            if first is None:
                return
            if not batches.is_set() or lanes.empty() or first[1] > BATCH_BYTES:
                self.writes += 1
                yield first[0]
                continue
            batch, size = [first[0]], first[1]
            # The lanes are read in priority order, so a batch holds the urgent
            # messages first; a big one is left for the next write.
            while not lanes.empty() and len(batch) < BATCH_MAX:
                if size + lanes.peek()[1] > BATCH_BYTES:
                    break
                queued = lanes.pop()
                batch.append(queued[0])
                size += queued[1]
            self.writes += 1
            if len(batch) == 1:
                yield batch[0]
            else:
                yield peer_pb2.PeerEnvelope(batch=peer_pb2.PeerBatch(envelopes=batch))

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            address = self._resolve(self.peer)
            if address is None:
                await asyncio.sleep(0.5)  # unknown address: wait for the view to name it
                continue
            try:
                async with self._owner.channel(self.peer, address) as channel:
                    await self._stream(channel)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and MISMATCH in (
                    exc.details() or ""
                ):
                    self._owner.refusals.refuse(
                        "cluster_mismatch", f"{self.peer} at {address} refused us: {exc.details()}"
                    )
                    backoff = MAX_BACKOFF_S
                elif exc.code() is grpc.StatusCode.FAILED_PRECONDITION and (
                    peer_protocol.MISMATCH in (exc.details() or "")
                ):
                    self._owner.refusals.refuse(
                        "protocol_version", f"{self.peer} at {address} refused us: {exc.details()}"
                    )
                    backoff = MAX_BACKOFF_S
                elif _TLS_FAILURE.search(exc.details() or ""):
                    # A certificate that does not name the peer meant, or does not verify:
                    # a misconfiguration (or an impostor) an operator must hear about.
                    self._owner.refusals.refuse(
                        "tls_handshake", f"{self.peer} at {address}: {exc.details()}"
                    )
                log.debug("stream %s→%s broke: %s", self._node, self.peer, exc.code())
            except Exception:
                log.exception("stream %s→%s failed", self._node, self.peer)
            self.broken += 1
            # What queued up while the stream was down is stale by now: the next stream
            # gets a fresh queue, and this one only the end marker for its reader.
            ended, self._lanes = self._lanes, _Lanes()
            self._dropped_before += ended.dropped
            ended.close()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        owner = self._owner
        batches = asyncio.Event()
        call = peer_pb2_grpc.PeerStub(channel).Stream(
            self._envelopes(self._lanes, batches),
            metadata=(
                (CLUSTER_KEY, owner.cluster_id),
                *owner.http_metadata(),
                *owner.address_metadata(),
                *peer_protocol.metadata(),
            ),
        )
        initial = await call.initial_metadata()
        owner.note_http(self.peer, initial)
        theirs = _cluster_of(initial)
        problem = peer_protocol.problem(self.peer, peer_protocol.version_of(initial), owner.node)
        if theirs and problem:
            owner.refusals.refuse("protocol_version", f"not sending to it: {problem}")
            call.cancel()
            await asyncio.sleep(MAX_BACKOFF_S)
            return
        if peer_protocol.reads_batches(initial):
            batches.set()
        # (No id at all: the server refused the stream, which ``await call`` raises.)
        if theirs and theirs != owner.cluster_id:
            # Whatever the server decides, we do not talk to another cluster.
            owner.refusals.refuse(
                "cluster_mismatch",
                f"{self.peer} is in cluster {theirs!r}, we are in {owner.cluster_id!r}: "
                "not sending to it",
            )
            call.cancel()
            await asyncio.sleep(MAX_BACKOFF_S)
            return
        await call

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
        *,
        cluster_id: str = "",
        tls: PeerTls | None = None,
        view: Callable[[], PeerView] | None = None,
        refused: Callable[[str], None] | None = None,
        binary_entries: Callable[[], None] | None = None,
        rtt: Callable[[str, float], None] | None = None,
        http_address: str = "",
        peer_address: str = "",
    ) -> None:
        """``resolve``: a peer's peer-port address; ``view``: what the guard reads of the
        replica (``None``: messages are not checked — only for transport tests);
        ``refused``: counts a refusal by reason (the metric); ``rtt``: observes a lease
        round trip to a peer, in seconds (``registry.node.peer_rtt``)."""
        self.node = node
        self.resolve = resolve
        self.cluster_id = cluster_id
        self._tls = tls
        self._deliver = deliver
        self._view = view
        self.refusals = RefusalLog(refused or (lambda _reason: None))
        self._snapshots = SnapshotGuard()
        self._links: dict[str, _Link] = {}
        self._heard: dict[str, float] = {}
        self._binary_entries = binary_entries
        self._binary_readers: set[str] = set()
        self._round_trips = RoundTrips(rtt or (lambda _peer, _seconds: None))
        self.http_address = http_address
        """This node's status page (host:port) as others should dial it; "" for none."""
        self._http: dict[str, str] = {}
        self.peer_address = peer_address
        """This node's peer port (host:port) as others should dial it; "" for none."""
        self._learned: dict[str, str] = {}

    def channel(self, peer: str, address: str) -> grpc.aio.Channel:
        if self._tls is None:
            return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(
            address,
            self._tls.channel_credentials(),
            options=[*CHANNEL_OPTIONS, *channel_options(peer)],
        )

    def add_to(self, server: grpc.aio.Server, address: str) -> int:
        """Serve the Peer service on ``address`` (with mTLS when configured); the port."""
        peer_pb2_grpc.add_PeerServicer_to_server(self, server)
        if self._tls is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self._tls.server_credentials())

    def send(self, messages: list[PeerMessage]) -> None:
        for msg in messages:
            if msg.dst == self.node:
                self._deliver(msg)
                continue
            envelope = encode_peer(msg)
            if envelope is None:
                log.error("cannot encode %s; dropped", describe(msg))
                continue
            link = self._links.get(msg.dst)
            if link is None:
                link = self._links[msg.dst] = _Link(self, msg.dst)
            link.send(envelope, _estimated_size(msg), urgent=is_urgent(msg))
            self._round_trips.sent(msg)

    def http_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((HTTP_KEY, self.http_address),) if self.http_address else ()

    def address_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((PEER_KEY, self.peer_address),) if self.peer_address else ()

    def address_of(self, peer: str) -> str | None:
        """Where to dial ``peer``: what the view says, else what its own stream said."""
        return self.resolve(peer) or self._learned.get(peer)

    def _note_address(self, peer: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        for key, value in metadata or ():
            if key == PEER_KEY and isinstance(value, str) and _HOST_PORT.fullmatch(value):
                self._learned[peer] = value

    def note_http(self, peer: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        for key, value in metadata or ():
            if key == HTTP_KEY and isinstance(value, str) and _HOST_PORT.fullmatch(value):
                self._http[peer] = value

    def http_address_of(self, peer: str) -> str:
        """``peer``'s status page address as its peer streams said ("" if unknown)."""
        return self.http_address if peer == self.node else self._http.get(peer, "")

    def reachable(self, peers: list[str], within: float) -> list[str]:
        """The peers (of ``peers``) heard from within ``within`` seconds, plus us."""
        now = time.monotonic()
        return [p for p in peers if p == self.node or now - self._heard.get(p, -1e9) <= within]

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
        theirs = _cluster_of(context.invocation_metadata())
        identity = stream_identity(context)  # type: ignore[arg-type]
        who = identity or context.peer()
        if self._tls is not None and identity is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        if theirs != self.cluster_id:
            detail = (
                f"{MISMATCH}: {self.node} is in cluster {self.cluster_id!r}, "
                f"the stream from {who} says {theirs!r}"
            )
            self.refusals.refuse("cluster_mismatch", detail)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, detail)
        problem = peer_protocol.problem(
            who, peer_protocol.version_of(context.invocation_metadata()), self.node
        )
        if problem:
            self.refusals.refuse("protocol_version", problem)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
        await context.send_initial_metadata(
            ((CLUSTER_KEY, self.cluster_id), *self.http_metadata(), *peer_protocol.metadata())
        )
        http_noted = False
        pinned = identity
        binary: bool | None = peer_protocol.reads_binary_entries(context.invocation_metadata())
        async for received in request_iterator:
            for envelope in _unbatched(received):
                msg = decode_peer(envelope)
                if msg is None:
                    self.refusals.refuse("undecodable", f"an envelope from {who}")
                    continue
                if pinned is None and self._tls is None:
                    pinned = msg.src  # without TLS a stream still speaks for one node only
                reason = self._refusal(msg, pinned)
                if reason is not None:
                    self.refusals.refuse(reason, f"{describe(msg)} on a stream from {who}")
                    continue
                self._heard[msg.src] = time.monotonic()
                self._round_trips.received(msg)
                if (
                    not http_noted
                ):  # the sender is known now (its certificate, or its first message)
                    self.note_http(msg.src, context.invocation_metadata())
                    self._note_address(msg.src, context.invocation_metadata())
                    http_noted = True
                if binary is not None:
                    self._note_codecs(msg.src, binary)
                    binary = None
                self._deliver(msg)
        return peer_pb2.PeerStreamEnd()

    def _note_codecs(self, peer: str, binary: bool) -> None:
        """Remember what ``peer``'s newest stream said it reads; once every peer the
        view knows reads binary entries, say so (once: entries already written in
        binary stay binary, so there is no way back)."""
        if binary:
            self._binary_readers.add(peer)
        else:
            self._binary_readers.discard(peer)
        if self._binary_entries is None or self._view is None:
            return
        view = self._view()
        everyone = view.raft_members | view.configured | view.members.keys()
        if everyone - {self.node} <= self._binary_readers:
            self._binary_entries()
            self._binary_entries = None

    def _refusal(self, msg: PeerMessage, sender: str | None) -> str | None:
        if self._view is None:
            return None if msg.dst == self.node else "wrong_dst"
        return check(msg, sender=sender, view=self._view()) or self._snapshots.check(msg)


def _unbatched(envelope: peer_pb2.PeerEnvelope) -> Sequence[peer_pb2.PeerEnvelope]:
    """The messages an envelope carries: a batch's, or itself."""
    if envelope.WhichOneof("body") == "batch":
        return envelope.batch.envelopes
    return (envelope,)


def _estimated_size(msg: PeerMessage) -> int:
    """About how many bytes ``msg`` takes on the wire (for ``BATCH_BYTES``), from its
    payloads, without serialising it."""
    if isinstance(msg, Message):
        return 128 + sum(64 + len(e.data) for e in msg.entries) + len(msg.chunk)
    if isinstance(msg, Forward):
        return 64 + len(msg.data)
    return 256
