"""The one Ready loop: how a shell drives a ``Replica`` through time, disk and network.

The node's ``Driver`` and the shell simulator (``registry.sim.shell``) both run this
class, so the ordering rules below are exercised by simulator seeds, not only by real
processes.

Rules
-----
1. etcd-io/raft's order for every Ready: **persist** (the ``Storage``; off the event loop,
   since an fsync blocks) → **send** → **apply** (the shell's callback: resolve proposals,
   run worker effects, notify watchers) → ``advance`` → the ``advanced`` callback. A vote
   or an append acknowledgement leaves only once what it promises is on disk.
2. Nothing reaches the replica between ``ready()`` and ``advance()``: inputs are fed only
   by ``run`` itself, between Readies — but for rule 11's acknowledgements.
3. Ticks follow the clock: tick ``i`` stands for ``t0 + i·tick``, however late it is
   processed. A late turn catches up every tick it missed; past
   ``LISTENING_CATCH_UP_S`` (at least two ticks) those ticks are *deaf* (the process was
   stalled, not listening, so they must not count as silence from the peers).
4. The member lease deadline (``lease_deadline``, in clock seconds) is recomputed after
   every catch-up and every Ready from the agent's remaining lease, anchored to the tick
   grid, so a stalled loop never extends it.
5. Group commit: when an input that ``gathers`` (a proposal) wakes the idle loop, it
   waits ``GROUP_COMMIT_S`` for more before taking the Ready, so one fsync (and one
   append per follower) carries many writes — unless ``GROUP_COMMIT_MAX`` inputs are
   already queued. If another proposal came in that time, writes are arriving
   concurrently, and it waits on to ``GROUP_COMMIT_WINDOW_S``: every Ready costs every
   node a persist and a peer round, so under load fewer, larger Readies are what make
   a write cheap, while a lone write still waits only ``GROUP_COMMIT_S``.
6. A leader's APPEND and HEARTBEAT messages may leave *before* its own persist when the
   Ready allows it (``appends_before_persist``, Raft thesis §10.2.1: the followers' fsync
   overlaps the leader's, which counts its own copy only after ``advance``). Votes and
   acknowledgements still wait for the persist (rule 1).
7. ``changed`` is called whenever the replica may have changed (after ticks, after
   ``ready()`` and after ``advance``), so the shell can drop what it derived from it.
8. Any exception ends ``run``; the caller fails stop (nothing is retried). An ``OSError``
   from ``persist`` surfaces as ``StorageIOFailed``.
9. A turn drains Readies for at most ``DRAIN_BUDGET_S``, then ticks and feeds inputs
   before it goes on (without waiting: a Ready is still due). Catching up a long log is
   many Readies (each bounded by ``max_committed_bytes_per_ready``); handled in one
   turn they kept the node from ticking and from hearing its peers, and a node joining
   behind 100k names lost its member lease while it applied them.
10. Before a turn's Readies, what needs no Ready leaves at once (``Replica.take_early``:
   Raft heartbeats and their answers while the term and vote are on disk, member
   heartbeats and acknowledgements, forwarded writes). Carried by the next Ready, an
   answer to the leader's heartbeat waited for that Ready's apply (a failover of 25k
   names) and its fsync, and on a loaded machine the leader lost its Raft lease and with
   it every member lease (issue 13). Heartbeats alone no longer cost a Ready either.
11. A member acknowledgement renews the lease when it arrives, even during a persist
   (the shell calls ``renew`` instead of queueing it). It touches only the agent's
   lease, and ticks stand still until the next turn, so the agent ends exactly as if
   it came with that turn's inputs; only the deadline moves earlier. Queued, the ack
   of each turn's heartbeat waited out that turn's persist: persists of 0.6 s (a
   stalled disk) on the ``lan`` preset's 1 s lease let the deadline pass, and the
   node fenced every worker it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from registry.core.membership import MemberAck
from registry.core.messages import MessageType
from registry.core.replica import PeerMessage, Replica, ReplicaReady
from registry.node.fail_stop import StorageIOFailed
from registry.node.storage_protocol import Storage

__all__ = ["LISTENING_CATCH_UP_S", "ReadyLoop"]

LISTENING_CATCH_UP_S = 0.1
"""Of the ticks a late loop iteration catches up, those within this much time (at least
two ticks) count as listening time; the rest are ``deaf`` (see ``RawNode.tick``). In
time, not ticks: on the ``local`` preset (20 ms ticks) two ticks is ordinary scheduling
jitter on a loaded machine, and treating it as deafness slowed failure detection enough
to miss the partition suite's convergence bound."""

GROUP_COMMIT_S = 0.001
"""Rule 5: how long a proposal that woke the loop waits for more before the Ready."""
GROUP_COMMIT_WINDOW_S = 0.008
"""Rule 5: how long in all it waits when proposals arrive concurrently. At 64
registrations in flight (load ~9), entries per Ready went from ~6 to ~12 and CPU per
write from ~550 to ~450 µs on the leader and from ~150 to ~125 µs on each follower
(16 ms gained little more)."""
GROUP_COMMIT_MAX = 256
"""...unless this many inputs are already queued (the batch is big enough)."""
DRAIN_BUDGET_S = 0.05
"""Rule 9: clock time one turn may spend handling Readies before it ticks again."""
EARLY = frozenset({MessageType.APPEND, MessageType.HEARTBEAT})
"""Rule 6: what a leader may send before its own persist."""

InputT = TypeVar("InputT")


class ReadyLoop(Generic[InputT]):
    """Drives one replica; ``InputT`` is the type of the shell's inputs (fed by ``feed``)."""

    def __init__(
        self,
        replica: Replica,
        storage: Storage,
        *,
        tick: float,
        clock: Callable[[], float],
        send: Callable[[list[PeerMessage]], None],
        apply: Callable[[ReplicaReady], None],
        advanced: Callable[[], None],
        feed: Callable[[InputT], None],
        on_turn: Callable[[], None],
        changed: Callable[[], None] = lambda: None,
        gathers: Callable[[InputT], bool] = lambda _item: False,
    ) -> None:
        self.replica = replica
        self.storage = storage
        self.tick = tick
        self.clock = clock
        self._send = send
        self._apply = apply
        self._advanced = advanced
        self._feed = feed
        self._on_turn = on_turn
        self._changed = changed
        self._gathers = gathers
        self.t0 = clock()
        self.ticks = 0
        self.listening_catch_up = max(2, round(LISTENING_CATCH_UP_S / tick))
        self.lease_deadline = 0.0
        self.stopping = False
        self._slowest: tuple[float, str] = (0.0, "")
        self._core_s = 0.0
        """How long the last ``replica.ready()`` took (reported with the Ready)."""

    async def run(self, inputs: asyncio.Queue[InputT]) -> None:
        """Until ``stopping``: wait for an input or the next tick, feed every queued
        input, catch up the ticks due, then drain the Readies."""
        await self.drain(budget_s=DRAIN_BUDGET_S)  # the first persists the new incarnation
        while not self.stopping:
            self._on_turn()
            delay = self.t0 + (self.ticks + 1) * self.tick - self.clock()
            if delay > 0 and not self.replica.has_ready():  # rule 9: left over, go on
                with contextlib.suppress(TimeoutError):
                    item = await asyncio.wait_for(inputs.get(), delay)
                    self._feed(item)
                    if self._gathers(item):
                        await self.gather(inputs)
            while not inputs.empty():
                self._feed(inputs.get_nowait())
            self.catch_up()
            self.send_early()
            await self.drain(budget_s=DRAIN_BUDGET_S)

    async def gather(self, inputs: asyncio.Queue[InputT]) -> None:
        """Rule 5: wait ``GROUP_COMMIT_S`` for more; if a proposal came, on to the window."""
        if inputs.qsize() >= GROUP_COMMIT_MAX:
            return
        await asyncio.sleep(GROUP_COMMIT_S)
        concurrent = False
        while not inputs.empty():
            item = inputs.get_nowait()
            self._feed(item)
            concurrent = concurrent or self._gathers(item)
        if concurrent and inputs.qsize() < GROUP_COMMIT_MAX:
            await asyncio.sleep(GROUP_COMMIT_WINDOW_S - GROUP_COMMIT_S)

    def send_early(self) -> None:
        """Rule 10 (never while a Ready is out: ``run`` calls it between Readies)."""
        early = self.replica.take_early()
        if early:
            self._send(early)

    def renew(self, ack: MemberAck) -> None:
        """Rule 11: a member acknowledgement, taken when it arrives (any time)."""
        self.replica.renew_lease(ack)
        self.update_lease()

    def catch_up(self) -> None:
        now = self.clock()
        elapsed = int((now - self.t0) / self.tick)
        if self.t0 + (elapsed + 1) * self.tick <= now:
            # The boundary ``run`` waits for, computed the same way: on a clock that lands
            # exactly on a tick, the division can round just below it, and ``run`` would
            # go round without waiting or ticking (the simulator's clock found this).
            elapsed += 1
        due = elapsed - self.ticks
        for i in range(max(0, due)):
            self.ticks += 1
            # Past a little scheduling jitter, a catch-up means this process stalled: it
            # was not listening, so those ticks must not count as silence from the others
            # (or a busy node starts needless elections).
            self.replica.tick(deaf=i >= self.listening_catch_up)
        self._changed()
        # A lone node acks its own heartbeats inside tick() without producing a Ready, so
        # the lease deadline must follow the agent here, not only after a Ready (else a
        # one-node cluster lost its lease after one lease).
        self.update_lease()

    async def drain(self, budget_s: float | None = None) -> None:
        """Handle Readies until none is left or, with ``budget_s``, until that much
        clock time has gone (rule 9)."""
        replica = self.replica
        started = self.clock()
        while replica.has_ready():
            began = time.perf_counter()
            ready = replica.ready()  # applies committed entries and reconciles: may be long
            self._core_s = time.perf_counter() - began
            self._changed()
            await self.handle(ready)
            if budget_s is not None and self.clock() - started >= budget_s:
                return

    async def handle(self, ready: ReplicaReady) -> None:
        """One Ready, in rule 1's order (with rule 6's early appends)."""
        early = self.early(ready)
        if early:
            self._send(early)
        await self.persist(ready)
        self.send(ready, skip=len(early) > 0)
        self.finish(ready)

    @staticmethod
    def early(ready: ReplicaReady) -> list[PeerMessage]:
        """Rule 6: the leader's appends and heartbeats that may precede its persist."""
        if not ready.raft.appends_before_persist:
            return []
        return [m for m in ready.raft.messages if m.type in EARLY]

    def finish(self, ready: ReplicaReady) -> None:
        """After persist and send: apply, then ``advance``."""
        started = time.perf_counter()
        self.update_lease()
        self._apply(ready)
        self.replica.advance(ready)
        self._changed()
        self._advanced()
        core_s, self._core_s = self._core_s, 0.0
        took = time.perf_counter() - started + core_s
        if took > self._slowest[0]:
            self._slowest = (
                took,
                f"{core_s * 1000:.0f} ms of it in the core (state machine and reconcile), "
                f"{len(ready.applied)} entries applied, {len(ready.effects)} worker effects,"
                f" {len(ready.changed)} names changed",
            )

    def take_slowest(self) -> str:
        """The longest Ready since the last call, from ``ready()`` to ``advance`` without
        the persist (it runs in a thread): for stall reports."""
        took, what = self._slowest
        self._slowest = (0.0, "")
        return f"{took * 1000:.0f} ms, {what}" if what else ""

    async def persist(self, ready: ReplicaReady) -> None:
        try:
            await asyncio.to_thread(
                self.storage.persist,
                incarnation=ready.incarnation,
                ready=ready.raft,
                compaction=ready.compaction,
            )
        except OSError as err:
            raise StorageIOFailed(err) from err

    def send(self, ready: ReplicaReady, *, skip: bool = False) -> None:
        """What is left to send after the persist (``skip``: the early ones went out)."""
        raft = (
            [m for m in ready.raft.messages if m.type not in EARLY] if skip else ready.raft.messages
        )
        self._send([*raft, *ready.messages])

    def update_lease(self) -> None:
        # Tick i stands for clock time t0 + i·tick, however late it was processed.
        remaining = self.replica.agent.lease_remaining()
        self.lease_deadline = self.t0 + (self.ticks + remaining) * self.tick
