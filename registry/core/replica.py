"""One registry node, sans-IO: Raft + the registry state machine + leases + activations.

The shell (``registry.node`` for real, ``registry.sim`` in simulation) drives it exactly
like a ``RawNode``: ``tick()``, ``step(message)``, ``propose(command)``, and the worker
runtime's reports (``handoff_done``, ``handoff_ignored``, ``stopped``); then ``ready()`` → persist
(incarnation first, then the Raft Ready, then any compaction) → send → run the effects →
``advance()``.

Effects are *level-triggered*: after every change the replica compares what the log says
this member (in its current incarnation) may run, while it holds a lease, against what it
told the runtime to run, and emits the difference. Replaying the log after a restart
therefore never resurrects an old activation: a restart is a new incarnation, and the log
gives the names of the old one new tokens (``state`` explains when).

A ``Stop`` is a request, not a fact: a worker may ignore it until its host is killed
(``fence_grace`` later). G1 holds whatever the worker does, so nothing that lets a name
run elsewhere waits on the request, only on the runtime's ``stopped(name, token)``
report (the worker returned, or its host was killed and reaped):

- An unregistered name is confirmed (``Released``; the name may then be registered
  again, anywhere) only once its stop is reported.
- A member that fenced sends no heartbeats until every stop of the fence is reported:
  its new incarnation comes up (rule 6 of ``membership``; that fails its old names over
  at once) only then. Until then it is a silent member, declared down after
  ``down_after``, which already covers lease + ``fence_grace``.
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

from registry.core.commands import (
    Checkpoint,
    Command,
    InvalidCommand,
    MemberDown,
    Quit,
    Released,
    Releases,
    Remind,
    decode,
    encode,
)
from registry.core.config import RaftConfig
from registry.core.controls import (
    CaptureState,
    ConfChangeProposed,
    Control,
    Drain,
    ProposeConfChange,
    ProposeDurable,
    StateCapture,
    TransferLeadership,
    UseBinaryEntries,
)
from registry.core.errors import ProposalRejected
from registry.core.membership import (
    HandedCounts,
    LeaderMonitor,
    LeaseLapse,
    MemberAck,
    MemberAgent,
    MemberHeartbeat,
)
from registry.core.messages import (
    EntryType,
    Handover,
    Message,
    MessageType,
    NodeId,
    PersistedState,
    Ready,
    Role,
    Snapshot,
)
from registry.core.raft import RawNode, Rng
from registry.core.state import Activation, Code, NameRecord, RegistryState, Result
from registry.core.timing import MembershipConfig
from registry.core.view import ReplicaView
from registry.core.write_pace import WritePace


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """A command a non-leader asks the leader to propose (used for releases)."""

    src: NodeId
    dst: NodeId
    data: bytes


PeerMessage = Message | MemberHeartbeat | MemberAck | Forward
R = TypeVar("R")


class StopReason(enum.Enum):
    QUORUM_LOST = "quorum_lost"
    UNREGISTERED = "unregistered"
    SUPERSEDED = "superseded"
    """The log moved the name away without a handoff (e.g. a failover raced a heal)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    activation: Activation


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    name: str
    token: int
    reason: StopReason


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginHandoff:
    """Call ``begin_handoff`` on the worker, stop it, then report ``handoff_done``
    (or ``handoff_ignored``). Past ``deadline_tick`` (this node's ticks) the runtime
    stops it and reports ``handoff_done`` without state."""

    name: str
    token: int
    deadline_tick: int


Effect = Start | Stop | BeginHandoff


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """A committed command and its result, for whoever waits on that index."""

    index: int
    command: Command | None
    result: Result


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReady:
    incarnation: int | None
    """A new incarnation (after fencing): persist it before sending anything."""
    raft: Ready
    compaction: Snapshot | None
    """Persist as the new snapshot and drop stored entries up to its index."""
    messages: tuple[PeerMessage, ...]
    """Membership and forwarding messages (Raft's are in ``raft.messages``)."""
    effects: tuple[Effect, ...]
    applied: tuple[Applied, ...]
    changed: tuple[str, ...] = ()
    """Names registered, unregistered or moved by the entries this Ready applied
    (sorted; what watchers are told)."""
    state_reset: bool = False
    """The registry state was replaced by an installed snapshot: any name may have
    changed, and ``changed`` covers only what was applied after it."""
    fenced: LeaseLapse | None = None
    """This Ready fences (its ``incarnation`` is new): why the lease ran out."""


@dataclass(slots=True)
class _Release:
    token: int
    state: bytes | None
    sent_tick: int


PACE_LAG_PER_LEASE = 4
"""Write pacing holds writes once a leased member is a quarter lease behind in applying:
with heartbeats up to a fifth of a lease stale, it still applies the index an
acknowledgement names well within its lease (rule 3)."""
RELEASES_PER_ENTRY = 512
RELEASE_STATE_BYTES_PER_ENTRY = 4 << 20
"""A batch of releases stops growing at either bound (one state alone may be larger)."""


def _release_batches(due: list[Released]) -> Iterator[list[Released]]:
    batch: list[Released] = []
    size = 0
    for item in due:
        weight = len(item.state or b"")
        if batch and (
            len(batch) >= RELEASES_PER_ENTRY or size + weight > RELEASE_STATE_BYTES_PER_ENTRY
        ):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += weight
    if batch:
        yield batch


class Replica:
    def __init__(
        self,
        raft_cfg: RaftConfig,
        member_cfg: MembershipConfig,
        rng: Rng,
        *,
        incarnation: int,
        persisted: PersistedState | None = None,
        address: str = "",
        roles: tuple[str, ...] = (),
        kinds: tuple[str, ...] = (),
        binary_entries: bool = True,
    ) -> None:
        self.raft = RawNode(raft_cfg, rng, persisted)
        self.binary_entries = binary_entries
        """Write log entries in the binary encoding; the shell starts a node that has
        peers with JSON until every peer has said it reads binary (a rolling upgrade from
        a release that reads only JSON; ``registry.core.commands``)."""
        snapshot = persisted.snapshot if persisted else None
        self.state = RegistryState.restore(snapshot.data) if snapshot else RegistryState()
        self.agent = MemberAgent(
            member_cfg, raft_cfg.node_id, incarnation, address=address, roles=roles, kinds=kinds
        )
        self.monitor = LeaderMonitor(member_cfg)
        self.cfg = member_cfg
        self.pace = WritePace(lag_tick=member_cfg.lease_tick // PACE_LAG_PER_LEASE)
        self._running: dict[str, int] = {}
        self._stopping: set[tuple[str, int]] = set()
        """Activations told to stop whose end the runtime has not reported yet."""
        self._fence_stops: set[tuple[str, int]] = set()
        """The part of ``_stopping`` a fence (or a lapsed lease) stopped: no heartbeat
        goes out while any is left."""
        self._handoff_asked: dict[str, tuple[int, int]] = {}
        self._own_entries: dict[int, tuple[bytes, Command]] = {}
        """Commands proposed here through ``propose``, by log index, until applied (or
        overtaken by the applied index): ``_apply`` need not decode them again."""
        self._tail_downs: dict[int, tuple[int, NodeId]] = {}
        """Entries this node appended as leader and has not applied yet: index → (term,
        the node a ``MemberDown`` declares down, or ``""`` for any other command). What
        an acknowledgement must make its member apply first (``_ack_index``)."""
        self._handoffs: dict[str, int] = {}
        """Handoffs begun and not finished yet (name → token), at most
        ``max_handoffs_in_flight``."""
        self._handoff_backlog: dict[str, None] = {}
        """Names to hand off once fewer are in flight (``_begin_handoffs``); a dict for
        a deterministic order (the simulator replays seeds)."""
        self._reconcile_rest: deque[str] = deque()
        """Held names whose starts and handoffs a pass left for later Readies (at most
        ``max_reconcile_names`` per pass). A deque: taking names off the front of a dict
        is quadratic (its deleted slots are skipped again on every ``next(iter(...))``:
        0.5 s of a 100k join)."""
        self._releases: dict[str, _Release] = {}
        self._fresh_releases: list[str] = []
        """Releases not sent yet (sent at the next chance, without a full scan)."""
        self._release_scan_tick = 0
        self._outbox: list[PeerMessage] = []
        self._reconcile_deferred = False
        """The last Ready applied a big change and left its reconcile to this one."""
        self._new_incarnation: int | None = None
        self._compaction: Snapshot | None = None
        self._was_leader = False
        self._had_lease = False
        self._dirty = True
        self._full_reconcile = True
        self._reconciled_view: tuple[bool, int, int] | None = None
        self._touched: set[str] = set()
        """Names to reconcile besides those the state machine touched."""
        self._listening_ticks = 0
        """Ticks this node could hear in: the leader's failure detector runs on these."""
        self._leader_seen: tuple[int, NodeId, int] = (0, "", 0)
        """(term, leader, listening tick when first heard from it as leader)."""
        self._handover: HandedCounts | None = None
        """The last handover a leader sent us (membership rule 5)."""
        self._took_over_from: NodeId = ""
        """While leading: the leader of the last leased term before ours, if known
        (membership rule 5; ourselves when we led it too)."""
        self._handed_from: NodeId = ""
        """While leading: whose handover our failure detector started from, if any."""
        self.raft.handover_note = self._handover_note
        self._unacked: dict[NodeId, tuple[MemberHeartbeat, int]] = {}
        """While leading: each member's latest heartbeat that arrived when this leader
        could grant no lease (membership rule 2), with the listening tick it arrived;
        answered as soon as it can (rule 2's exception)."""

    @property
    def id(self) -> NodeId:
        return self.raft.id

    @property
    def incarnation(self) -> int:
        return self.agent.incarnation

    def view(self) -> ReplicaView:
        """A read-only view for the shell (``registry.core.view``); O(1), no copies."""
        raft = self.raft
        return ReplicaView(
            id=raft.id,
            role=raft.role,
            term=raft.term,
            leader=raft.leader,
            commit_index=raft.commit_index,
            applied_index=raft.applied_index,
            last_index=raft.last_index,
            conf=raft.conf,
            incarnation=self.agent.incarnation,
            ticks=self.agent.ticks,
            state=self.state,
            term_at=raft.term_at,
            progress_match=self._progress_match,
            last_heard=self.monitor.last_heard,
            drained=self.drained,
            binary_entries=self.binary_entries,
            handover_from=self._handed_from,
        )

    def _progress_match(self, node: NodeId) -> int | None:
        progress = self.raft.progress(node)
        return progress.match if progress is not None else None

    def running(self) -> dict[str, int]:
        """Names the runtime was told to run, with their tokens."""
        return dict(self._running)

    # -- inputs ------------------------------------------------------------------------

    def tick(self, *, deaf: bool = False) -> None:
        """One tick; ``deaf`` as in ``RawNode.tick``: leases run on, failure detectors
        (elections, check-quorum, the leader's MemberDown timer) do not."""
        self.raft.tick(deaf=deaf)
        self.agent.tick()
        if not deaf:
            self._listening_ticks += 1
            if self.raft.role is Role.LEADER:
                self.pace.record(self._listening_ticks, self.raft.last_index)
            else:
                self.pace.reset()
        self._drive()

    def step(self, msg: PeerMessage) -> None:
        if isinstance(msg, Message):
            if msg.type is MessageType.TIMEOUT_NOW:
                self._keep_handover(msg)
            self.raft.step(msg)
        elif isinstance(msg, MemberHeartbeat):
            self._on_heartbeat(msg)
        elif isinstance(msg, MemberAck):
            self.agent.on_ack(msg)
        elif msg.dst == self.id and self.raft.role is Role.LEADER:
            self._try_propose(msg.data)  # on failure the sender retries after retry_tick
        self._drive()

    def renew_lease(self, ack: MemberAck) -> None:
        """A member acknowledgement taken at once, even while a Ready is out
        (``ReadyLoop`` rule 11). It changes only the agent's lease (no message, no
        proposal, nothing the Ready carries), which ticks do not move between
        ``ready()`` and ``advance()``: the agent ends as if it came with the next turn's
        inputs, but the shell's lease deadline is extended before it can pass."""
        self.agent.on_ack(ack)

    def use_binary_entries(self) -> None:
        """Every peer reads binary entries now (see ``binary_entries``)."""
        self.binary_entries = True

    def writes_lag(self) -> bool:
        """A leased member (or this leader) is behind in applying: hold new client
        writes back (``registry.core.write_pace``)."""
        if self.raft.role is not Role.LEADER:
            return False
        now = self._listening_ticks
        return self.pace.lagging(now, self.monitor.leased_applied(now))

    def propose(self, command: Command) -> int:
        """Propose a client command; raises ``NotLeader``/``ProposalRejected``."""
        data = encode(command, binary=self.binary_entries)
        index = self.raft.propose(data)
        self._own_entries[index] = (data, command)
        down = command.node if isinstance(command, MemberDown) else ""
        self._tail_downs[index] = (self.raft.term, down)
        return index

    def propose_checkpoint(self, command: Checkpoint | Quit | Remind) -> None:
        """Propose ``command`` here when leading, else forward it to the leader; with no
        leader it is dropped. Either way the caller waits to see it applied, and sends it
        again if it was lost (``registry.node.checkpoints``)."""
        data, leader = encode(command, binary=self.binary_entries), self.raft.leader
        if self.raft.role is Role.LEADER:
            self._try_propose(data, command)
        elif leader:
            self._outbox.append(Forward(src=self.id, dst=leader, data=data))

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        """The runtime stopped ``name`` after ``begin_handoff``; ``state`` goes to the
        next owner (``None``: it restarts fresh)."""
        if self._running.get(name) == token:
            del self._running[name]
        self._handoff_finished(name, token)
        # Sent with the next Ready, together with every other release that is done by
        # then: a rebalance finishes thousands of handoffs in one turn of the loop.
        self._add_release(name, token, state)

    def stopped(self, name: str, token: int) -> None:
        """The activation ``(name, token)`` has ended here: its worker returned, or its
        host exited or was killed and reaped. Reports of other activations (one that was
        never told to stop, a duplicate) change nothing."""
        key = (name, token)
        self._handoff_finished(name, token)
        if key not in self._stopping:
            return
        self._stopping.discard(key)
        self._fence_stops.discard(key)
        record = self.state.names.get(name)
        if (
            record is not None
            and record.unregistering
            and record.token == token
            and record.holder == self.id
        ):
            # Confirm the stop so the name can be registered again.
            self._add_release(name, token, None)

    def drain(self) -> None:
        """Start a graceful stop: from the next heartbeat on, this member asks to be given
        nothing and to have its names moved away by handoff (with state)."""
        self.agent.draining = True

    def control(self, control: Control[R]) -> R:
        """Apply an operator input (``registry.core.controls``); its typed result."""
        result: object = None
        if isinstance(control, Drain):
            self.drain()
        elif isinstance(control, TransferLeadership):
            self.raft.transfer_leadership(control.target)
        elif isinstance(control, UseBinaryEntries):
            self.use_binary_entries()
        elif isinstance(control, ProposeConfChange):
            term = self.raft.term
            result = ConfChangeProposed(
                term=term, index=self.raft.propose_conf_change(control.change)
            )
        elif isinstance(control, ProposeDurable):
            self.propose_checkpoint(control.command)
        elif isinstance(control, CaptureState):
            index = self.raft.applied_index
            result = StateCapture(
                index=index,
                term=self.raft.term_at(index) or 0,
                names=len(self.state.names),
                data=self.state.snapshot(),
            )
        else:
            raise TypeError(f"not a control input: {control!r}")
        return cast(R, result)

    def drained(self) -> bool:
        """Nothing is held here any more (or nobody else could take it)."""
        if self._running:
            return False
        # Polled after every Ready while a node stops: no sort, stop at the first one.
        names = self.state.names
        return not any(not names[n].unregistering for n in self.state.held_names(self.id))

    def handoff_ignored(self, name: str, token: int) -> None:
        """The worker answered ``Ignore()``: it stays here until owners may change
        again (``_handoff_asked`` remembers the placement epoch it was asked in)."""
        self._handoff_finished(name, token)

    def _handoff_finished(self, name: str, token: int) -> None:
        """A handoff in flight ended (done, ignored, or its activation ended): once half
        the window is free, the next names of the backlog are reconciled again."""
        handoffs = self._handoffs
        if handoffs.get(name) != token:
            return
        del handoffs[name]
        self._refill_handoffs()

    def _refill_handoffs(self) -> None:
        """Once half the window is free, reconcile the next names of the backlog again
        (in batches: one Ready per freed name would be a Ready per handoff)."""
        backlog = self._handoff_backlog
        free = self.cfg.max_handoffs_in_flight - len(self._handoffs)
        if backlog and free * 2 >= self.cfg.max_handoffs_in_flight:
            for _ in range(min(free, len(backlog))):
                self._touched.add(backlog.popitem()[0])
            self._dirty = True

    # -- Ready -------------------------------------------------------------------------

    def take_early(self) -> list[PeerMessage]:
        """What may leave before the next Ready (``ReadyLoop`` rule 10): Raft's
        heartbeats and their answers (``RawNode.take_early``), and every peer message of
        this layer (member heartbeats and acknowledgements, forwarded writes and
        releases), none of which promises anything the Ready's persist writes."""
        early: list[PeerMessage] = [*self.raft.take_early(), *self._outbox]
        self._outbox.clear()
        return early

    def has_ready(self) -> bool:
        return bool(
            self.raft.has_ready()
            or self._outbox
            or self._dirty
            or self._compaction
            or self._new_incarnation is not None
            or self.agent.has_lease() != self._had_lease
            or bool(self._fresh_releases and self.raft.leader)
        )

    def ready(self) -> ReplicaReady:
        if self.raft.role is Role.LEADER:
            # Before any message leaves: a TIMEOUT_NOW (leadership transfer) lets the
            # target win at once, so the revoked lease must already bound our own.
            self.agent.cap_self_lease(self._self_lease_cap())
        if self._fresh_releases:
            self._send_releases(self.agent.ticks, self.raft.leader, self.raft.role is Role.LEADER)
        rd = self.raft.ready()
        if rd.snapshot is not None:
            self.state = RegistryState.restore(rd.snapshot.data)
            self._dirty = True
            self._full_reconcile = True
        applied = self._apply(rd)
        if self._tail_downs and rd.committed:
            done = rd.committed[-1].index
            for index in [i for i in self._tail_downs if i <= done]:
                del self._tail_downs[index]
        changed = self.state.take_touched()
        self._touched |= changed
        last = rd.committed[-1].index if rd.committed else 0
        snap = rd.snapshot.meta.index if rd.snapshot else 0
        self.agent.applied_to(max(self.raft.applied_index, last, snap))
        effects = self._reconcile() if self._reconcile_due(len(changed)) else []
        out = ReplicaReady(
            incarnation=self._new_incarnation,
            fenced=self.agent.lapse if self._new_incarnation is not None else None,
            raft=rd,
            compaction=self._compaction,
            messages=tuple(self._outbox),
            effects=tuple(effects),
            applied=tuple(applied),
            changed=tuple(sorted(changed)),
            state_reset=rd.snapshot is not None,
        )
        self._outbox.clear()
        self._new_incarnation = None
        self._compaction = None
        return out

    def advance(self, ready: ReplicaReady) -> None:
        self.raft.advance(ready.raft)
        # A snapshot costs time in proportion to the names; taking one at most every
        # len(names) entries keeps that cost O(1) per entry (every 1024 entries, 100k
        # names stalled the loop for most of a second each time).
        if self.raft.should_compact(at_least=len(self.state.names)):
            index = self.raft.applied_index
            self._compaction = self.raft.compact(index, self.state.snapshot())

    # -- internals ---------------------------------------------------------------------

    def _apply(self, rd: Ready) -> list[Applied]:
        applied: list[Applied] = []
        own = self._own_entries
        for entry in rd.committed:
            if entry.type is not EntryType.NORMAL or not entry.data:
                continue
            mine = own.pop(entry.index, None) if own else None
            try:
                # A command this node proposed need not be decoded again: its entry's
                # bytes are the ones it encoded (checked), and decoding gives back an
                # equal command (tests/unit/test_commands.py). The leader decoded every
                # batch it had just encoded: 11 % of its CPU in batched registrations.
                if mine is not None and mine[0] == entry.data:
                    command: Command | None = mine[1]
                else:
                    command = decode(entry.data)
            except InvalidCommand as exc:
                applied.append(
                    Applied(
                        index=entry.index,
                        command=None,
                        result=Result(code=Code.INVALID_ARGUMENT, message=str(exc)),
                    )
                )
                continue
            assert command is not None
            result = self.state.apply(entry.index, command)
            applied.append(Applied(index=entry.index, command=command, result=result))
            self._dirty = True
        if own and rd.committed:  # a lost leadership can leave entries that never commit
            last = rd.committed[-1].index
            for index in [i for i in own if i <= last]:
                del own[index]
        return applied

    def _reconcile_due(self, changed: int) -> bool:
        """Whether this Ready reconciles. Not after applying more than
        ``max_reconcile_names`` changed names, unless the lease flipped (a fence is never
        put off): the next Ready does it (``_dirty`` keeps one due), and between the two
        the shell's loop turns (``ReadyLoop`` rules 9 and 10). A survivor applying a
        ``MemberDown`` of 25k names and then reconciling every name it holds spent
        ~240 ms of CPU in one Ready, on 2 loaded cores 1.3 s of wall time without a word
        to its leader, which lost its Raft lease and every member lease with it."""
        if self._lease_flipped():
            return True
        if not self._dirty:
            return False
        if changed > self.cfg.max_reconcile_names and not self._reconcile_deferred:
            self._reconcile_deferred = True
            return False
        self._reconcile_deferred = False
        return True

    def _lease_flipped(self) -> bool:
        return self.agent.has_lease() != self._had_lease

    def _drive(self) -> None:
        """Everything that reacts to time or input and may propose: heartbeats, the
        leader's failure detector, retried releases."""
        raft, now, heard = self.raft, self.agent.ticks, self._listening_ticks
        leader = raft.leader
        is_leader = raft.role is Role.LEADER
        if leader and (raft.term, leader) != self._leader_seen[:2]:
            previous = self._leader_seen
            self._leader_seen = (raft.term, leader, heard)
            # Membership rule 5: did the leader we heard from last lead the last term
            # that had a leader lease? Then nobody granted a lease since it did.
            last = previous[0] > 0 and previous[0] in (raft.term - 1, raft.prior_leader_term)
            self._took_over_from = previous[1] if last else ""
            self._handed_from = ""
            if is_leader and last and previous[1] == self.id:
                self.monitor.reelected()  # what we heard then still holds
            elif is_leader:
                known = last and previous[1] not in ("", self.id)
                handed = self._handover
                if handed is not None and handed.term != raft.term - 1:
                    handed = None
                self._handed_from = handed.sender if handed is not None else ""
                self.monitor.became_leader(heard, previous[1:] if known else None, handed, self.id)
        elif is_leader and not self._was_leader:
            self._took_over_from = self._handed_from = ""
            self.monitor.became_leader(heard)
        self._was_leader = is_leader
        if is_leader:
            self.agent.cap_self_lease(self._self_lease_cap())
            if self._unacked and self._grants_leases():
                self._answer_unacked(heard)
        else:
            self._unacked.clear()
        # After a fence, stay silent until every stopped worker has really ended: a
        # heartbeat would bring the new incarnation up and move its names at once.
        heartbeat = None if self._fence_stops else self.agent.heartbeat(leader)
        if heartbeat is not None:
            if leader == self.id:
                self._on_heartbeat(heartbeat)
            else:
                self._outbox.append(heartbeat)
        if is_leader:
            for command in self.monitor.changes(self.state, heard):
                self._try_propose(encode(command, binary=self.binary_entries), command)
        self._send_releases(now, leader, is_leader)

    def _handover_note(self) -> Handover | None:
        """What our ``TIMEOUT_NOW`` tells its target (membership rule 5): our failure
        detector's counts, if we led this term (else we know nothing to hand over)."""
        if self._leader_seen[:2] != (self.raft.term, self.id):
            return None
        members = (m.node for m in self.state.up_members())
        return self.monitor.handover(self._listening_ticks, members, self._took_over_from)

    def _keep_handover(self, msg: Message) -> None:
        """Keep the counts of a ``TIMEOUT_NOW`` from the leader of our current term,
        which is what Raft acts on, as of when it arrived (membership rule 5)."""
        raft, handover = self.raft, msg.handover
        if handover is not None and msg.src == raft.leader and msg.term == raft.term:
            now = self._listening_ticks
            bases = {m.node: (now - m.ticks, m.acked) for m in handover.members}
            self._handover = HandedCounts(
                sender=msg.src, term=msg.term, prior=handover.prior, bases=bases
            )

    def _send_releases(self, now: int, leader: NodeId, is_leader: bool) -> None:
        """Send new releases at once; re-check and resend the others once per
        ``retry_tick``. (A sorted scan of every pending release on every message was
        quadratic when thousands of names hand off together.)"""
        if now >= self._release_scan_tick:
            self._release_scan_tick = now + self.cfg.retry_tick
            names = sorted(self._releases)
            if leader:
                self._fresh_releases.clear()
        elif leader and self._fresh_releases:
            names, self._fresh_releases = self._fresh_releases, []
        else:
            return
        due: list[Released] = []
        for name in names:
            release = self._releases.get(name)
            if release is None:
                continue
            record = self.state.names.get(name)
            if record is None or record.token != release.token:
                del self._releases[name]
                self._dirty = True
                self._touched.add(name)
                continue
            if now - release.sent_tick < self.cfg.retry_tick or not leader:
                continue
            release.sent_tick = now
            due.append(Released(name=name, token=release.token, state=release.state))
        for batch in _release_batches(due):
            one = batch[0] if len(batch) == 1 else Releases(items=tuple(batch))
            data = encode(one, binary=self.binary_entries)
            if is_leader:
                self._try_propose(data, one)
            else:
                self._outbox.append(Forward(src=self.id, dst=leader, data=data))

    def _add_release(self, name: str, token: int, state: bytes | None) -> None:
        self._releases[name] = _Release(token=token, state=state, sent_tick=-(10**9))
        self._fresh_releases.append(name)

    def _self_lease_cap(self) -> int:
        """How far a leader may lease itself: its Raft lease plus ``leader_extra_tick``
        (membership rule 5), on the agent's clock (it ticks with Raft's)."""
        return self.agent.ticks + self.raft.lease_remaining() + self.cfg.leader_extra_tick

    def _try_propose(self, data: bytes, command: Command | None = None) -> None:
        """Propose ``data`` (``command`` encoded, or a peer's forwarded entry, decoded
        here once: ``_apply`` reuses it, and ``_ack_index`` must know what it is)."""
        # A refusal (e.g. during a leadership transfer) is retried after retry_tick.
        with contextlib.suppress(ProposalRejected):
            index = self.raft.propose(data)
            if command is None:
                with contextlib.suppress(InvalidCommand):  # every replica refuses it
                    command = decode(data)
            if command is not None:
                self._own_entries[index] = (data, command)
            down = command.node if isinstance(command, MemberDown) else ""
            self._tail_downs[index] = (self.raft.term, down)

    def _ack_index(self, member: NodeId) -> int:
        """Membership rule 3: the log index ``member`` must have applied before an
        acknowledgement given now counts: the last ``MemberDown`` of it in this leader's
        log — applied (its record's ``down_index``) or still in the tail. Any entry of
        the tail this leader cannot vouch for (appended by a predecessor, a no-op or a
        configuration change, a JSON entry) makes it the last index, as before."""
        raft, tail = self.raft, self._tail_downs
        record = self.state.members.get(member)
        required = 0
        if record is not None and not record.up:
            # A snapshot from before down_index was kept says 0: every applied index.
            required = record.down_index or raft.applied_index
        last = raft.last_index
        for index in range(raft.applied_index + 1, last + 1):
            known = tail.get(index)
            if known is None or raft.term_at(index) != known[0]:
                return last
            if known[1] == member:
                required = index
        return required

    def _grants_leases(self) -> bool:
        """Membership rule 2: only while its Raft lease holds, and only once an entry of
        this term is committed: then no entry missing from this leader's log (say, a
        predecessor's MemberDown) can ever commit, and its log holds every MemberDown
        that may still commit (rule 3, ``_ack_index``)."""
        raft = self.raft
        return raft.lease_remaining() > 0 and raft.term_at(raft.commit_index) == raft.term

    def _on_heartbeat(self, hb: MemberHeartbeat) -> None:
        if self.raft.role is not Role.LEADER or hb.dst != self.id:
            return
        self._unacked.pop(hb.src, None)  # a newer heartbeat supersedes it
        if not self._grants_leases():
            self._unacked[hb.src] = (hb, self._listening_ticks)
            return
        self._acknowledge(hb, self._listening_ticks)

    def _answer_unacked(self, heard: int) -> None:
        """The lease is back: answer what arrived while it was not (membership rule 2).
        The answer is given under the lease as the rule asks, and the member's lease
        still counts from its send, so a late answer only grants less. It saved every
        member lease a brief Raft-lease gap used to cost: the heartbeats of the gap went
        unanswered, and a member whose next one came after its lease ended fenced.
        Older than a lease, a heartbeat is worth nothing to its member: dropped."""
        unacked, self._unacked = self._unacked, {}
        for src in sorted(unacked):
            hb, arrived = unacked[src]
            if heard - arrived < self.cfg.lease_tick:
                self._acknowledge(hb, arrived)

    def _acknowledge(self, hb: MemberHeartbeat, arrived: int) -> None:
        ack = self.monitor.on_heartbeat(
            hb,
            arrived,
            lease_holds=self._grants_leases(),
            last_index=self._ack_index(hb.src),
            member_up=bool((member := self.state.members.get(hb.src)) and member.up),
        )
        if ack is None:
            return
        if ack.dst == self.id:
            self.agent.on_self_ack(ack, self._self_lease_cap())
        else:
            self._outbox.append(ack)

    def _reconcile(self) -> list[Effect]:
        """Level-triggered, but only over what can have changed: every name after a
        view, lease, incarnation or snapshot change; otherwise just the names the applied
        entries touched (a batch of 1000 registrations must not rescan 100k names)."""
        self._dirty = False
        effects: list[Effect] = []
        full = self._full_reconcile or self.cfg.reconcile_everything
        if self.agent.check_fence(running=bool(self._running)):
            self._new_incarnation = self.agent.incarnation
            for name, token in sorted(self._running.items()):
                effects.append(Stop(name=name, token=token, reason=StopReason.QUORUM_LOST))
                self._stopping.add((name, token))
                self._fence_stops.add((name, token))
            self._running.clear()
            self._handoff_asked.clear()
            self._handoffs.clear()
            full = True
        lease = self.agent.has_lease()
        self._had_lease = lease
        # A full pass only when owners may have changed (not when another member merely
        # re-fenced: its names are touched, and reconciled here as such).
        view = (lease, self.incarnation, self.state.placement_epoch)
        # Only the owners moved: what runs here can only have become unwanted through
        # its own record, and a changed record is a touched name (as in any Ready).
        before = self._reconciled_view
        owners_only = not full and before is not None and view[:2] == before[:2]
        full = full or view != self._reconciled_view
        self._reconciled_view = view
        self._full_reconcile = False
        touched, self._touched = self._touched, set()
        if full and not self.cfg.reconcile_everything:
            if not owners_only:
                effects += self._stop_not_held(lease)
            touched |= self._queue_every_held_name()
            full = False
        if full:
            self._handoff_backlog.clear()  # a full pass finds every name that waits
            self._reconcile_rest.clear()
            held = list(self.state.held_by(self.id))
            running = sorted(self._running.items())
        else:
            records = (self.state.names.get(name) for name in sorted(touched))
            held = [r for r in records if r is not None and r.holder == self.id]
            running = [(n, self._running[n]) for n in sorted(touched) if n in self._running]
        mine = [r for r in held if r.holder_incarnation == self.incarnation]
        # Records, not Activations: a full pass over 100k held names builds objects
        # only for the few it starts.
        desired = {r.spec.name: r for r in mine if not r.unregistering} if lease else {}
        effects += self._stop_unwanted(running, desired, lease)
        if lease:
            # A name unregistered before this holder ever started it (both entries applied
            # in one Ready, say) is not running here either: confirm that too, or it stays
            # half-unregistered for as long as this incarnation lives.
            for record in mine:
                name = record.spec.name
                if (
                    record.unregistering
                    and name not in self._running
                    and name not in self._releases
                    and (name, record.token) not in self._stopping
                ):
                    self._add_release(name, record.token, None)
        # Stops (above) are never deferred; starts and handoffs of a big pass are
        # spread over Readies, so the loop ticks and hears its peers in between.
        work = self._take_work(mine) if lease else mine
        for record in work:
            name = record.spec.name
            if name not in desired:
                continue
            released = self._releases.get(name)
            if name in self._running or (released and released.token == record.token):
                continue
            effects.append(Start(activation=self.state.activation(record)))
            self._running[name] = record.token
        if lease:
            effects += self._begin_handoffs(work)
            self._refill_handoffs()  # for handoffs that ended with their activation
        self._refill_rest()
        return effects

    def _stop_not_held(self, lease: bool) -> list[Effect]:
        """A full pass's stops, never deferred: whatever runs here that this member
        (this incarnation, with a lease) does not hold at that token."""
        names, me, incarnation = self.state.names, self.id, self.incarnation
        unwanted = []
        for name, token in self._running.items():
            record = names.get(name)
            if (
                not lease
                or record is None
                or record.holder != me
                or record.holder_incarnation != incarnation
                or record.unregistering
                or record.token != token
            ):
                unwanted.append((name, token))
        return self._stop_unwanted(sorted(unwanted), {}, lease) if unwanted else []

    def _queue_every_held_name(self) -> set[str]:
        """A full pass's starts and handoffs, spread: every held name goes to
        ``_reconcile_rest``, and the first ``max_reconcile_names`` are reconciled now as
        touched names (``_refill_rest`` hands out the next ones Ready by Ready). Building
        the held records, the wanted set and the running list of all ~34k names held
        after a 100k failover took ~84 ms of CPU in one Ready, on 2 loaded cores 0.3 s of
        wall time; the member that was the rest of the quorum answered its leader late
        (issue 13's join and heal)."""
        self._handoff_backlog.clear()  # every name that waits is queued again
        rest = self._reconcile_rest
        rest.clear()
        rest.extend(sorted(self.state.held_names(self.id)))
        return {rest.popleft() for _ in range(min(self.cfg.max_reconcile_names, len(rest)))}

    def _take_work(self, mine: list[NameRecord]) -> list[NameRecord]:
        """Rule: at most ``max_reconcile_names`` held names get their starts and
        handoffs in one pass; the rest wait in ``_reconcile_rest``. A failover or a
        re-fence at 100k names made one Ready start ~9k activations and check ~34k
        owners (0.3-0.8 s on a loaded machine: member leases lapsed and fenced)."""
        limit = self.cfg.max_reconcile_names
        if self.cfg.reconcile_everything or len(mine) <= limit:
            return mine
        self._reconcile_rest.extend(record.spec.name for record in mine[limit:])
        return mine[:limit]

    def _refill_rest(self) -> None:
        """The next names the last pass left, reconciled in the next Ready as touched
        names (their records are read again then: they may have moved meanwhile)."""
        rest = self._reconcile_rest
        if not rest:
            return
        for _ in range(min(self.cfg.max_reconcile_names, len(rest))):
            self._touched.add(rest.popleft())
        self._dirty = True

    def _stop_unwanted(
        self, running: list[tuple[str, int]], desired: dict[str, NameRecord], lease: bool
    ) -> list[Effect]:
        effects: list[Effect] = []
        for name, token in running:
            want = desired.get(name)
            if want is not None and want.token == token:
                continue
            if not lease:
                reason = StopReason.QUORUM_LOST
            elif self.state.registered(name) is None:
                reason = StopReason.UNREGISTERED
            else:
                reason = StopReason.SUPERSEDED
            effects.append(Stop(name=name, token=token, reason=reason))
            del self._running[name]
            self._handoffs.pop(name, None)
            # An unregister is confirmed by ``stopped``, once the worker has really ended.
            self._stopping.add((name, token))
            if not lease:
                self._fence_stops.add((name, token))
        return effects

    def _begin_handoffs(self, mine: list[NameRecord]) -> list[Effect]:
        """Names held here whose owner is now someone else: hand them off, once per
        (token, placement epoch), at most ``max_handoffs_in_flight`` at a time (the rest
        go to the backlog, reconciled again as handoffs finish)."""
        effects: list[Effect] = []
        epoch = self.state.placement_epoch  # asked again only once owners may differ
        # Hoisted: after a view change this runs for every held name (100k: the loop
        # body is all there is to the node's stall).
        still_owner = self.state.still_owner
        me, running, asked, owner_of, in_flight, backlog = (
            self.id,
            self._running,
            self._handoff_asked,
            self.state.owners(),
            self._handoffs,
            self._handoff_backlog,
        )
        limit = self.cfg.max_handoffs_in_flight
        if len(in_flight) >= limit:
            self._prune_handoffs()
        deadline_tick = self.agent.ticks + self.cfg.handoff_deadline_tick
        for record in mine:
            name = record.spec.name
            token = record.token
            if record.unregistering or running.get(name) != token:
                continue
            if asked.get(name) == (token, epoch):
                continue
            if still_owner(record) or owner_of(record) == me:
                continue  # still its owner without hashing its name again (state)
            if len(in_flight) >= limit:
                backlog[name] = None
                continue
            asked[name] = (token, epoch)
            in_flight[name] = token
            effects.append(BeginHandoff(name=name, token=token, deadline_tick=deadline_tick))
        return effects

    def _prune_handoffs(self) -> None:
        """Forget handoffs whose activation no longer runs here under that token (ended
        by a path that did not report the handoff itself)."""
        running = self._running
        for name, token in list(self._handoffs.items()):
            if running.get(name) != token:
                del self._handoffs[name]
