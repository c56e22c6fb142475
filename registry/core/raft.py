"""Raft consensus as a pure state machine (etcd-io/raft's RawNode, in Python).

Theory of operation
-------------------
The core never does IO. The shell feeds it inputs — ``tick()`` (one unit of its own
monotonic clock), ``step(message)`` (a message from a peer), ``propose(data)`` — and
collects a ``Ready``: state to persist, messages to send, committed entries to apply. It
persists, then sends, then applies, then calls ``advance(ready)``. Nothing may be fed in
between ``ready()`` and ``advance()``.

Rules, beyond the Raft paper's Figure 2:

1. **Pre-vote** (thesis §9.6): an election timeout first asks for *pre-votes* at
   ``term + 1`` without changing its term; only a majority of grants starts a real
   election. A node rejoining after a partition therefore cannot bump the term.
2. **Check-quorum**: a leader that has not heard from a quorum of voters within
   ``election_tick`` steps down.
3. **Leader stickiness**: a node that heard from a live leader within ``election_tick``
   of its own ticks ignores (pre-)vote requests for higher terms. A node counts itself
   as having just heard from a leader when it starts, because it cannot know otherwise
   (a restarted voter must not hand out a vote that breaks a lease it acked before).
   Leadership transfer (``force``) overrides stickiness.
4. **Leader lease**: the leader's heartbeats carry a sequence number; once a quorum of
   voters acked heartbeat *s*, nobody else can be elected until ``lease_ticks`` after *s*
   was *sent* (see ``RaftConfig.lease_ticks`` for the drift arithmetic). A leader that
   starts a leadership transfer gives up its lease for the rest of its term.
5. **Commit rule** (Figure 8): a leader only counts replicas for entries of its own term.
6. **Membership**: one voter or learner added or removed at a time; a configuration
   takes effect as soon as its entry is in the log (thesis §4.1), and reverts if the
   entry is truncated. A new leader proposes no change until an entry of its term is
   committed (the fix for the single-server-change bug found in 2015), and only one
   change may be uncommitted. A leader that removed itself steps down once the change
   commits.
7. **Persistence**: everything in a Ready is persisted before its messages are sent, so
   a vote, an acknowledged entry or a term is never forgotten by a crash.
8. **ReadIndex**: a read is safe at the commit index once a quorum acked a heartbeat
   sent after the read arrived, provided the leader has committed an entry of its term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from registry.core.conf import conf_in_log, validate_conf_change
from registry.core.config import RaftConfig
from registry.core.errors import (
    ConfChangeInProgress,
    NotLeader,
    ProposalRejected,
    TransferInProgress,
)
from registry.core.log import RaftInvariantError, RaftLog
from registry.core.messages import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    PersistedState,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from registry.core.progress import Progress, ProgressState

_LEADER_MESSAGES = (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT)
_VOTE_RESPONSE = {
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
    MessageType.VOTE: MessageType.VOTE_RESP,
}


class Rng(Protocol):
    """The injected source of randomness (a seeded ``random.Random`` fits)."""

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class _PendingRead:
    heartbeat: int
    """The heartbeat sequence a quorum must ack before the read is safe."""
    index: int
    origin: NodeId
    context: int


class RawNode:
    """One Raft peer. Not thread-safe; drive it from one loop."""

    def __init__(
        self, config: RaftConfig, rng: Rng, persisted: PersistedState | None = None
    ) -> None:
        self.cfg = config.validate()
        self._rng = rng
        persisted = persisted or PersistedState()
        snapshot = persisted.snapshot or Snapshot(
            meta=SnapshotMeta(index=0, term=0, conf=ConfState()), data=b""
        )
        hard = persisted.hard_state
        self._log = RaftLog(snapshot, persisted.entries, hard.commit)
        self._term = hard.term
        self._vote = hard.vote
        if persisted == PersistedState():
            self._bootstrap()
        self._lead: NodeId = NONE
        self._role = Role.FOLLOWER
        self._conf = ConfState()
        self._last_conf_index = 0
        self._prs: dict[NodeId, Progress] = {}
        self._refresh_conf()

        self._ticks = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._ticks_since_leader = 0  # rule 3: a fresh start counts as "just heard"
        self._randomized_timeout = self._new_election_timeout()
        self._votes: dict[NodeId, bool] = {}

        self._transferee: NodeId = NONE
        self._transfer_elapsed = 0
        self._lease_revoked = False
        self._heartbeat_seq = 0
        self._heartbeat_sent_tick: dict[int, int] = {}
        self._reads: list[_PendingRead] = []
        self._reads_awaiting_commit: list[tuple[NodeId, int]] = []
        self._read_broadcast_due = False
        self._append_broadcast_due = False

        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._incoming_snapshot: tuple[SnapshotMeta, bytearray] | None = None
        self._prev_hard = hard  # what storage holds; bootstrap state differs and gets persisted
        self._prev_soft = SoftState(leader=NONE, role=Role.FOLLOWER)
        self._outstanding: Ready | None = None

    def _bootstrap(self) -> None:
        """A first start writes the initial membership as committed entries of term 1, as
        etcd-io/raft does: every bootstrap node writes the same entries, so logs agree, and
        a node that joins later learns the membership by replication like anything else."""
        changes = [
            ConfChange(type=ConfChangeType.ADD_VOTER, node=n) for n in sorted(self.cfg.voters)
        ]
        changes += [
            ConfChange(type=ConfChangeType.ADD_LEARNER, node=n) for n in sorted(self.cfg.learners)
        ]
        if not changes:
            return  # a joining node: it waits for a leader to replicate the membership
        self._log.append(
            [
                Entry(term=1, index=k, type=EntryType.CONF_CHANGE, data=change.encode())
                for k, change in enumerate(changes, start=1)
            ]
        )
        self._log.commit_to(len(changes))
        self._term = 1

    # -- read-only view ----------------------------------------------------------------

    @property
    def id(self) -> NodeId:
        return self.cfg.node_id

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader(self) -> NodeId:
        return self._lead

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def first_index(self) -> int:
        return self._log.first_index

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def conf(self) -> ConfState:
        return self._conf

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        return self._log.snapshot.meta

    def term_at(self, index: int) -> int | None:
        return self._log.term(index)

    def log_entries(self) -> tuple[Entry, ...]:
        return tuple(self._log.entries)

    def progress(self, node: NodeId) -> Progress | None:
        """The leader's view of ``node``'s replication (for tests and status pages)."""
        return self._prs.get(node) if self._role is Role.LEADER else None

    def lease_remaining(self) -> int:
        """Ticks during which no other node can become leader; 0 when not a leader or
        when a quorum has not acked a recent enough heartbeat (rule 4)."""
        if self._role is not Role.LEADER or self._lease_revoked:
            return 0
        if self.id not in self._conf.voters:
            return 0
        acked = self._quorum_value(
            lambda node: self._heartbeat_seq if node == self.id else self._prs[node].acked_heartbeat
        )
        sent = self._heartbeat_sent_tick.get(acked)
        if sent is None:
            return 0
        return max(0, sent + self.cfg.lease_ticks() - self._ticks)

    # -- inputs ------------------------------------------------------------------------

    def tick(self, *, deaf: bool = False) -> None:
        """One tick of time. ``deaf``: a tick that passed while this node could not
        listen (its process stalled and is catching up). It advances the clock leases
        are measured on, but not the failure detectors (election timeout, check-quorum):
        hearing nobody while not listening says nothing about the others. Counting those
        ticks later only makes this node wait longer before it votes or campaigns, so
        the leader lease stays safe."""
        self._check_not_outstanding()
        self._ticks += 1
        if self._role is Role.LEADER:
            self._tick_leader(deaf)
        elif not deaf:
            self._tick_follower()

    def step(self, msg: Message) -> None:
        self._check_not_outstanding()
        if msg.dst != self.id or msg.src == self.id:
            return
        if not self._step_term(msg):
            return
        if msg.type in _VOTE_RESPONSE:
            self._handle_vote_request(msg)
        elif self._role is Role.LEADER:
            self._step_leader(msg)
        elif self._role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a new entry; returns its index. Raises ``NotLeader`` or
        ``TransferInProgress``; nothing is appended then."""
        self._check_can_propose()
        return self._append_entry(EntryType.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> int:
        self._check_can_propose()
        if self._log.term(self._log.committed) != self._term:
            raise ConfChangeInProgress(
                "the leader has not yet committed an entry of its term; retry shortly"
            )
        if self._last_conf_index > self._log.committed:
            raise ConfChangeInProgress(
                f"membership change at index {self._last_conf_index} is not committed yet"
            )
        validate_conf_change(self._conf, change)
        return self._append_entry(EntryType.CONF_CHANGE, change.encode())

    def read_index(self, context: int) -> None:
        """Ask for a linearizable read; a ``ReadState`` with ``context`` comes back in a
        later Ready (never, if leadership is lost meanwhile: the caller times out)."""
        self._check_not_outstanding()
        if self._role is Role.LEADER:
            self._leader_read(self.id, context)
        elif self._lead:
            self._send(MessageType.READ_INDEX, self._lead, context=context)
        else:
            raise NotLeader(NONE)

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to ``target`` once its log is caught up. Proposals are refused
        meanwhile; after ``election_tick`` without success the transfer is abandoned and
        this node steps down so that a fresh term restores a leader lease."""
        self._check_not_outstanding()
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if target == self.id or target == self._transferee:
            return
        if target not in self._conf.voters:
            raise ProposalRejected(f"cannot transfer leadership to {target}: not a voter")
        self._transferee = target
        self._transfer_elapsed = 0
        self._lease_revoked = True
        if self._prs[target].match == self._log.last_index:
            self._send(MessageType.TIMEOUT_NOW, target)
        else:
            self._send_append(target)

    def campaign(self) -> None:
        """Start an election now (tests and manual operations)."""
        self._check_not_outstanding()
        self._hup(force=False)

    # -- Ready -------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._append_broadcast_due or self._read_broadcast_due:
            return True
        return bool(
            self._msgs
            or self._read_states
            or self._log.pending_snapshot
            or self._log.unstable_from <= self._log.last_index
            or self._log.committed > self._log.applied
            or self._hard_state() != self._prev_hard
            or self._soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        self._check_not_outstanding()
        if self._role is Role.LEADER:
            if self._append_broadcast_due:
                self._broadcast_append()
            if self._read_broadcast_due:
                self._broadcast_heartbeat()
        self._append_broadcast_due = self._read_broadcast_due = False
        hard, soft = self._hard_state(), self._soft_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=self._log.unstable_entries(),
            snapshot=self._log.pending_snapshot,
            committed=self._log.next_committed(self.cfg.max_committed_per_ready),
            messages=tuple(self._msgs),
            read_states=tuple(self._read_states),
        )
        self._msgs.clear()
        self._read_states.clear()
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._outstanding:
            raise RaftInvariantError("advance() must be given the Ready from the last ready()")
        self._outstanding = None
        if rd.soft_state:
            self._prev_soft = rd.soft_state
        if rd.hard_state:
            self._prev_hard = rd.hard_state
        if rd.snapshot:
            self._log.pending_snapshot = None
        if rd.entries:
            self._log.unstable_from = rd.entries[-1].index + 1
        if rd.committed:
            self._log.applied = rd.committed[-1].index

    def should_compact(self, at_least: int = 0) -> bool:
        """Whether ``snapshot_threshold`` (or ``at_least``, if larger) applied entries
        sit in the log."""
        due = max(self.cfg.snapshot_threshold, at_least)
        return self._log.applied - self._log.offset >= due

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Replace entries up to ``index`` (applied) by ``data``, the application state at
        ``index``. The caller persists the returned snapshot and drops those entries."""
        return self._log.compact(index, data, self._conf_at(index))

    # -- term and vote handling --------------------------------------------------------

    def _step_term(self, msg: Message) -> bool:
        """Apply the term rules; False when the message must be dropped."""
        if msg.term > self._term:
            if msg.type in (MessageType.PRE_VOTE, MessageType.VOTE):
                in_lease = (
                    self.cfg.check_quorum and self._ticks_since_leader < self.cfg.election_tick
                )
                if in_lease and not msg.force:
                    return False  # rule 3: a live leader exists; do not even bump the term
            if msg.type is MessageType.PRE_VOTE or (
                msg.type is MessageType.PRE_VOTE_RESP and not msg.reject
            ):
                pass  # pre-votes never change terms
            elif msg.type in _LEADER_MESSAGES:
                self._become_follower(msg.term, msg.src)
            else:
                self._become_follower(msg.term, NONE)
        elif msg.term < self._term:
            if msg.type in _LEADER_MESSAGES and (self.cfg.check_quorum or self.cfg.pre_vote):
                # A stale leader that we ignore would never learn of the new term and,
                # with pre-vote, nobody would ever raise it: tell it.
                self._send(MessageType.APPEND_RESP, msg.src)
            elif msg.type is MessageType.PRE_VOTE:
                self._send(MessageType.PRE_VOTE_RESP, msg.src, reject=True)
            return False
        return True

    def _handle_vote_request(self, msg: Message) -> None:
        pre = msg.type is MessageType.PRE_VOTE
        can_vote = (
            self._vote == msg.src
            or (self._vote == NONE and self._lead == NONE)
            or (pre and msg.term > self._term)
        )
        response = _VOTE_RESPONSE[msg.type]
        if can_vote and self._log.is_up_to_date(msg.index, msg.log_term):
            self._send(response, msg.src, term=msg.term)
            if not pre:
                self._election_elapsed = 0
                self._vote = msg.src
        else:
            self._send(response, msg.src, reject=True)

    # -- roles -------------------------------------------------------------------------

    def _become_follower(self, term: int, lead: NodeId) -> None:
        self._reset(term)
        self._role = Role.FOLLOWER
        self._lead = lead

    def _become_pre_candidate(self) -> None:
        # Unlike the other transitions, keep the term and vote: this is only a poll.
        self._role = Role.PRE_CANDIDATE
        self._lead = NONE
        self._votes = {}
        self._election_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._role = Role.CANDIDATE
        self._vote = self.id

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._role = Role.LEADER
        self._lead = self.id
        self._lease_revoked = False
        last = self._log.last_index
        self._prs = {node: Progress(next=last + 1) for node in self._members_and_self()}
        self._prs[self.id].match = last
        self._prs[self.id].state = ProgressState.REPLICATE
        # An empty entry of the new term lets the commit index move (Figure 8).
        self._append_entry(EntryType.NORMAL, b"")
        self._broadcast_heartbeat()

    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = NONE
        self._lead = NONE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        self._votes = {}
        self._transferee = NONE
        self._lease_revoked = False
        self._reads.clear()
        self._reads_awaiting_commit.clear()
        self._read_broadcast_due = False
        self._append_broadcast_due = False
        self._heartbeat_sent_tick.clear()

    def _new_election_timeout(self) -> int:
        base = self.cfg.election_tick
        return base + self._rng.randrange(0, base)

    def _promotable(self) -> bool:
        return self.id in self._conf.voters and self._log.pending_snapshot is None

    # -- ticking -----------------------------------------------------------------------

    def _tick_follower(self) -> None:
        self._ticks_since_leader += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._hup(force=False)

    def _tick_leader(self, deaf: bool) -> None:
        self._ticks_since_leader = 0
        self._heartbeat_elapsed += 1
        self._election_elapsed += 0 if deaf else 1
        if self._election_elapsed >= self.cfg.election_tick:
            self._election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_recently_active():
                self._become_follower(self._term, NONE)
                return
        if self._transferee:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.cfg.election_tick:
                self._become_follower(self._term, NONE)  # see transfer_leadership
                return
        if self._heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_recently_active(self) -> bool:
        active = sum(
            1
            for node in self._conf.voters
            if node == self.id or (node in self._prs and self._prs[node].recent_active)
        )
        for node, pr in self._prs.items():
            if node != self.id:
                pr.recent_active = False
        return active >= self._quorum()

    # -- elections ---------------------------------------------------------------------

    def _hup(self, *, force: bool) -> None:
        if self._role is Role.LEADER or not self._promotable():
            return
        if self.cfg.pre_vote and not force:
            self._become_pre_candidate()
            self._solicit(MessageType.PRE_VOTE, self._term + 1, force=False)
        else:
            self._become_candidate()
            self._solicit(MessageType.VOTE, self._term, force=force)

    def _solicit(self, kind: MessageType, term: int, *, force: bool) -> None:
        self._votes = {self.id: True}
        if self._poll_won():
            self._on_poll_won()
            return
        for node in sorted(self._conf.voters):
            if node != self.id:
                self._send(
                    kind,
                    node,
                    term=term,
                    index=self._log.last_index,
                    log_term=self._log.last_term,
                    force=force,
                )

    def _poll_won(self) -> bool:
        granted = sum(1 for n, ok in self._votes.items() if ok and n in self._conf.voters)
        return granted >= self._quorum()

    def _poll_lost(self) -> bool:
        rejected = sum(1 for n, ok in self._votes.items() if not ok and n in self._conf.voters)
        return rejected >= self._quorum()

    def _on_poll_won(self) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._become_candidate()
            self._solicit(MessageType.VOTE, self._term, force=False)
        else:
            self._become_leader()

    def _step_candidate(self, msg: Message) -> None:
        if msg.type in _LEADER_MESSAGES:
            self._become_follower(self._term, msg.src)
            self._step_follower(msg)
            return
        expected = (
            MessageType.PRE_VOTE_RESP if self._role is Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        )
        if msg.type is not expected:
            return
        self._votes.setdefault(msg.src, not msg.reject)
        if self._poll_won():
            self._on_poll_won()
        elif self._poll_lost():
            self._become_follower(self._term, NONE)

    # -- follower ----------------------------------------------------------------------

    def _step_follower(self, msg: Message) -> None:
        kind = msg.type
        if kind in _LEADER_MESSAGES:
            self._lead = msg.src
            self._election_elapsed = 0
            self._ticks_since_leader = 0
            if kind is MessageType.APPEND:
                self._handle_append(msg)
            elif kind is MessageType.HEARTBEAT:
                self._log.commit_to(min(msg.commit, self._log.last_index))
                self._send(MessageType.HEARTBEAT_RESP, msg.src, context=msg.context)
            else:
                self._handle_snapshot_chunk(msg)
        elif kind is MessageType.TIMEOUT_NOW:
            if msg.src == self._lead:
                self._hup(force=True)
        elif kind is MessageType.READ_INDEX_RESP and not msg.reject:
            self._read_states.append(ReadState(index=msg.index, context=msg.context))

    def _handle_append(self, msg: Message) -> None:
        log = self._log
        if msg.index < log.committed:
            self._send(MessageType.APPEND_RESP, msg.src, index=log.committed)
            return
        before = log.last_index
        last_new = log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        if last_new is None:
            hint = log.find_conflict_by_term(min(msg.index, log.last_index), msg.log_term)
            self._send(
                MessageType.APPEND_RESP,
                msg.src,
                index=msg.index,
                reject=True,
                reject_hint=hint,
                log_term=log.term(hint) or 0,
            )
            return
        if any(e.type is EntryType.CONF_CHANGE for e in msg.entries) or (
            log.last_index < before or self._last_conf_index > msg.index
        ):
            self._refresh_conf()
        self._send(MessageType.APPEND_RESP, msg.src, index=last_new)

    def _handle_snapshot_chunk(self, msg: Message) -> None:
        meta = msg.snapshot
        if meta is None:
            return
        incoming = self._incoming_snapshot
        if msg.offset == 0:
            incoming = self._incoming_snapshot = (meta, bytearray())
        if incoming is None or incoming[0] != meta or msg.offset != len(incoming[1]):
            # A chunk we cannot place: ask for the transfer again from where we are.
            have = len(incoming[1]) if incoming and incoming[0] == meta else 0
            self._send(MessageType.SNAPSHOT_RESP, msg.src, offset=have, reject=have == 0)
            return
        incoming[1].extend(msg.chunk)
        if not msg.done:
            self._send(MessageType.SNAPSHOT_RESP, msg.src, offset=len(incoming[1]))
            return
        self._incoming_snapshot = None
        snapshot = Snapshot(meta=meta, data=bytes(incoming[1]))
        if self._restore(snapshot):
            self._send(MessageType.APPEND_RESP, msg.src, index=self._log.last_index)
        else:
            self._send(MessageType.APPEND_RESP, msg.src, index=self._log.committed)

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.meta
        if meta.index <= self._log.committed:
            return False
        if self._log.match_term(meta.index, meta.term):
            # We already hold that prefix: just learn it is committed.
            self._log.commit_to(meta.index)
            return False
        self._log.restore(snapshot)
        self._refresh_conf()
        return True

    # -- leader ------------------------------------------------------------------------

    def _step_leader(self, msg: Message) -> None:
        pr = self._prs.get(msg.src)
        if msg.type is MessageType.READ_INDEX:
            self._leader_read(msg.src, msg.context)
            return
        if pr is None:
            return
        pr.recent_active = True
        if msg.type is MessageType.APPEND_RESP:
            self._handle_append_response(msg, pr)
        elif msg.type is MessageType.HEARTBEAT_RESP:
            self._handle_heartbeat_response(msg, pr)
        elif msg.type is MessageType.SNAPSHOT_RESP:
            self._handle_snapshot_response(msg, pr)

    def _handle_append_response(self, msg: Message, pr: Progress) -> None:
        if msg.reject:
            hint = msg.reject_hint
            if msg.log_term > 0:
                hint = self._log.find_conflict_by_term(msg.reject_hint, msg.log_term)
            if pr.maybe_decrease(msg.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(msg.src)
            return
        was_paused = self._paused(pr)
        if not pr.maybe_update(msg.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.snapshot is None or pr.match >= pr.snapshot.meta.index:
                pr.become_probe()
        else:
            pr.free_inflight(msg.index)
        if self._maybe_commit():
            if self._role is not Role.LEADER:
                return
            self._append_broadcast_due = True
        elif was_paused:
            self._send_append(msg.src)
        while self._send_append(msg.src, allow_empty=False):
            pass
        if msg.src == self._transferee and pr.match == self._log.last_index:
            self._send(MessageType.TIMEOUT_NOW, msg.src)

    def _handle_heartbeat_response(self, msg: Message, pr: Progress) -> None:
        pr.probe_sent = False
        pr.acked_heartbeat = max(pr.acked_heartbeat, msg.context)
        if pr.state is ProgressState.REPLICATE and self._paused(pr):
            # APPENDs were lost and their acks will never come: free one slot so the next
            # APPEND goes out; the follower rejects the gap and we fall back to probing.
            pr.free_oldest()
        if pr.state is ProgressState.SNAPSHOT:
            self._maybe_resend_snapshot_chunk(msg.src, pr)
        elif pr.match < self._log.last_index:
            self._send_append(msg.src)
        self._release_reads()

    def _handle_snapshot_response(self, msg: Message, pr: Progress) -> None:
        if pr.state is not ProgressState.SNAPSHOT or pr.snapshot is None:
            return
        pr.snapshot_offset = 0 if msg.reject else msg.offset
        if pr.snapshot_offset < len(pr.snapshot.data):
            self._send_snapshot_chunk(msg.src, pr)

    def _maybe_resend_snapshot_chunk(self, node: NodeId, pr: Progress) -> None:
        if self._ticks - pr.snapshot_sent_tick >= 2 * self.cfg.heartbeat_tick:
            self._send_snapshot_chunk(node, pr)

    def _maybe_commit(self) -> bool:
        index = self._quorum_value(lambda node: self._prs[node].match)
        # Figure 8: only entries of the current term are committed by counting replicas.
        if self._log.term(index) != self._term or not self._log.commit_to(index):
            return False
        if self._reads_awaiting_commit:
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for origin, context in waiting:
                self._leader_read(origin, context)
        if self.id not in self._conf.voters and self._log.committed >= self._last_conf_index:
            self._become_follower(self._term, NONE)  # rule 6: we removed ourselves
        return True

    def _quorum_value(self, value_of: _ValueOf) -> int:
        """The largest value that a quorum of voters has reached."""
        values = sorted((value_of(node) for node in self._conf.voters), reverse=True)
        if not values:
            return 0
        return values[self._quorum() - 1]

    def _quorum(self) -> int:
        return len(self._conf.voters) // 2 + 1

    def _append_entry(self, kind: EntryType, data: bytes) -> int:
        index = self._log.last_index + 1
        self._log.append([Entry(term=self._term, index=index, type=kind, data=data)])
        if kind is EntryType.CONF_CHANGE:
            self._refresh_conf()
        self._prs[self.id].maybe_update(index)
        self._maybe_commit()
        self._append_broadcast_due = True
        return index

    def _broadcast_append(self) -> None:
        for node in self._peers():
            self._send_append(node)

    def _broadcast_heartbeat(self) -> None:
        self._heartbeat_seq += 1
        seq = self._heartbeat_seq
        self._heartbeat_sent_tick[seq] = self._ticks
        horizon = self._ticks - 2 * self.cfg.election_tick
        for old in [s for s, t in self._heartbeat_sent_tick.items() if t < horizon]:
            del self._heartbeat_sent_tick[old]
        for node in self._peers():
            pr = self._prs[node]
            commit = min(pr.match, self._log.committed)
            self._send(MessageType.HEARTBEAT, node, commit=commit, context=seq)
            if pr.state is ProgressState.SNAPSHOT:
                self._maybe_resend_snapshot_chunk(node, pr)

    def _paused(self, pr: Progress) -> bool:
        return pr.is_paused(self.cfg.max_inflight, self.cfg.max_inflight_bytes)

    def _send_append(self, node: NodeId, *, allow_empty: bool = True) -> bool:
        pr = self._prs[node]
        if self._paused(pr):
            return False
        log = self._log
        if pr.next > log.last_index + 1:
            raise RaftInvariantError(f"{node}: next {pr.next} beyond last {log.last_index}")
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            pr.become_snapshot(log.snapshot, self._ticks)
            self._send_snapshot_chunk(node, pr)
            return False
        entries = _within_bytes(
            log.slice(pr.next, min(log.last_index + 1, pr.next + self.cfg.max_entries_per_msg)),
            self.cfg.max_bytes_per_msg,
        )
        if not entries and not allow_empty:
            return False
        self._send(
            MessageType.APPEND,
            node,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=log.committed,
        )
        if entries:
            pr.sent_entries(entries[-1].index, sum(len(e.data) for e in entries))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot_chunk(self, node: NodeId, pr: Progress) -> None:
        snapshot = pr.snapshot
        if snapshot is None:
            return
        start = pr.snapshot_offset
        chunk = snapshot.data[start : start + self.cfg.snapshot_chunk_bytes]
        pr.snapshot_sent_tick = self._ticks
        self._send(
            MessageType.SNAPSHOT,
            node,
            snapshot=snapshot.meta,
            chunk=chunk,
            offset=start,
            done=start + len(chunk) >= len(snapshot.data),
        )

    # -- reads -------------------------------------------------------------------------

    def _leader_read(self, origin: NodeId, context: int) -> None:
        if self._log.term(self._log.committed) != self._term:
            self._reads_awaiting_commit.append((origin, context))
            return
        read = _PendingRead(
            heartbeat=self._heartbeat_seq + 1,
            index=self._log.committed,
            origin=origin,
            context=context,
        )
        if self._conf.voters == {self.id}:
            self._deliver_read(read)
            return
        self._reads.append(read)
        self._read_broadcast_due = True

    def _release_reads(self) -> None:
        if not self._reads:
            return
        acked = self._quorum_value(
            lambda node: self._heartbeat_seq if node == self.id else self._prs[node].acked_heartbeat
        )
        while self._reads and self._reads[0].heartbeat <= acked:
            self._deliver_read(self._reads.pop(0))

    def _deliver_read(self, read: _PendingRead) -> None:
        if read.origin == self.id:
            self._read_states.append(ReadState(index=read.index, context=read.context))
        else:
            self._send(
                MessageType.READ_INDEX_RESP, read.origin, index=read.index, context=read.context
            )

    # -- membership --------------------------------------------------------------------

    def _conf_at(self, index: int) -> ConfState:
        log = self._log
        return conf_in_log(log.snapshot.meta.conf, log.offset, log.entries, upto=index)[0]

    def _refresh_conf(self) -> None:
        """Rule 6: the configuration is the latest one in the log, committed or not."""
        log = self._log
        conf, self._last_conf_index = conf_in_log(log.snapshot.meta.conf, log.offset, log.entries)
        if conf == self._conf:
            return
        self._conf = conf
        if self._role is Role.LEADER:
            members = self._members_and_self()
            for node in list(self._prs):
                if node not in members:
                    del self._prs[node]
            for node in sorted(members - self._prs.keys()):
                self._prs[node] = Progress(next=self._log.last_index + 1)
            if self._transferee and self._transferee not in conf.voters:
                self._transferee = NONE

    def _members_and_self(self) -> frozenset[NodeId]:
        return self._conf.members() | {self.id}

    def _peers(self) -> list[NodeId]:
        return sorted(n for n in self._prs if n != self.id)

    # -- plumbing ----------------------------------------------------------------------

    def _send(
        self, kind: MessageType, to: NodeId, *, term: int | None = None, **fields: object
    ) -> None:
        self._msgs.append(
            Message(
                type=kind,
                src=self.id,
                dst=to,
                term=self._term if term is None else term,
                **fields,  # type: ignore[arg-type]
            )
        )

    def _hard_state(self) -> HardState:
        return HardState(term=self._term, vote=self._vote, commit=self._log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(leader=self._lead, role=self._role)

    def _check_can_propose(self) -> None:
        self._check_not_outstanding()
        if self._role is not Role.LEADER:
            raise NotLeader(self._lead)
        if self._transferee:
            raise TransferInProgress(f"leadership is being transferred to {self._transferee}")

    def _check_not_outstanding(self) -> None:
        if self._outstanding is not None:
            raise RaftInvariantError("call advance() on the last Ready before feeding more input")


class _ValueOf(Protocol):
    def __call__(self, node: NodeId, /) -> int: ...


def _within_bytes(entries: list[Entry], limit: int) -> list[Entry]:
    """The longest prefix of ``entries`` whose data fits in ``limit`` bytes, but at least
    one entry (an entry larger than the limit travels alone)."""
    total = 0
    for count, entry in enumerate(entries):
        total += len(entry.data)
        if total > limit and count > 0:
            return entries[:count]
    return entries
