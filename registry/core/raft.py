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
2. **Check-quorum**: a leader that has not heard from a quorum of voters in
   ``check_quorum_windows`` (2) windows of ``election_tick`` in a row steps down. This
   is liveness only: what a leader may do without a quorum is bounded by its lease
   (rule 4), which runs from acked heartbeats whatever the role, and by the commit
   rule. A second window keeps one stalled voter (its process starved for an election
   timeout) from costing an election that needs that same voter.
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
   commits, and sends ``TIMEOUT_NOW`` to a voter that holds its whole log, so that the
   others need not wait out an election timeout first (as after a transfer).
7. **Persistence**: everything in a Ready is persisted before its messages are sent, so
   a vote, an acknowledged entry or a term is never forgotten by a crash. One exception
   (Raft thesis §10.2.1): a leader's APPENDs and HEARTBEATs may go out while its own
   entries are being persisted (``Ready.appends_before_persist``), because the leader
   counts itself toward the commit quorum only for entries it has persisted (at
   ``advance``); any majority of persisted copies commits an entry, with or without it.
   And HEARTBEATs and HEARTBEAT_RESPs need no Ready at all (``take_early``) while the
   term and vote they carry are on disk: they promise nothing about the log.
8. **ReadIndex**: a read is safe at the commit index once a quorum acked a heartbeat
   sent after the read arrived, provided the leader has committed an entry of its term.
9. **Who led before**: a granted vote reports the latest term in which the voter knew a
   leader since it started (0: none since then). A leader that won term *T* with
   reports all non-zero takes their maximum, with its own, as ``prior_leader_term``:
   no term between that one and *T* had a leader with a leader lease, because such a
   leader's lease needed heartbeat acks from a quorum, and one of those voters is in
   every quorum that elects; after voting for *T* it accepts nothing of a lower term.
   A voter that restarted cannot vouch for what it knew before (it reports 0), so one
   such vote makes the sum unknown (0). ``replica`` uses this to see that the leader
   it heard from last led the last term that had a lease (membership rule 5): a split
   vote between it and this term then costs no extra ``down_after``.

Layout: ``RawNode`` (this module: inputs, Ready, terms, elections, ticking) is built on
``raft_replication`` (leader replication and commit), ``raft_snapshots`` (snapshot
transfer), ``raft_reads`` (ReadIndex and lease) and ``raft_state`` (shared fields,
membership, plumbing). Import ``RawNode`` and ``Rng`` from here.
"""

from __future__ import annotations

from registry.core.conf import validate_conf_change
from registry.core.errors import (
    ConfChangeInProgress,
    NotLeader,
    ProposalRejected,
)
from registry.core.log import RaftInvariantError
from registry.core.messages import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from registry.core.progress import Progress, ProgressState
from registry.core.raft_replication import _RaftReplication
from registry.core.raft_state import Rng

__all__ = ["RawNode", "Rng"]

_LEADER_MESSAGES = (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT)
_NO_READY_NEEDED = frozenset({MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP})
_VOTE_RESPONSE = {
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
    MessageType.VOTE: MessageType.VOTE_RESP,
}


class RawNode(_RaftReplication):
    """One Raft peer. Not thread-safe; drive it from one loop."""

    # -- read-only view ----------------------------------------------------------------

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
    def prior_leader_term(self) -> int:
        """While leading: the latest term before ours whose leader may have held a
        leader lease, or 0 when the votes that elected us cannot tell (rule 9)."""
        return self._prior_leader_term if self._role is Role.LEADER else 0

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
            self._send_timeout_now(target)
        else:
            self._send_append(target)

    def forget_leader(self) -> None:
        """Treat the leader as not heard from for ``election_tick`` (etcd-io/raft's
        ForgetLeader): this follower may grant (pre-)votes at once instead of keeping
        rule 3's stickiness window. That voids the leader lease this node acked, so use
        it only when the leader is known to be gone (tests, manual operations). A leader
        ignores it."""
        self._check_not_outstanding()
        if self._role is not Role.LEADER:
            self._ticks_since_leader = self.cfg.election_tick

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

    def take_early(self) -> list[Message]:
        """The queued HEARTBEATs and HEARTBEAT_RESPs, to send now rather than with the
        next Ready (rule 7), when the term and vote they carry are the persisted ones.
        A follower answered its leader's heartbeats only after the apply and the fsync of
        the Ready that carried the answer; busy applying a failover of 25k names on a
        loaded machine, it answered too late for the leader's lease (issue 13)."""
        self._check_not_outstanding()
        if not self._msgs:  # most turns: no HardState built for nothing
            return []
        hard, prev = self._hard_state(), self._prev_hard
        if (hard.term, hard.vote) != (prev.term, prev.vote):
            return []
        early = [m for m in self._msgs if m.type in _NO_READY_NEEDED]
        if early:
            self._msgs = [m for m in self._msgs if m.type not in _NO_READY_NEEDED]
        return early

    def ready(self) -> Ready:
        self._check_not_outstanding()
        if self._role is Role.LEADER:
            if self._append_broadcast_due:
                self._broadcast_append()
            if self._read_broadcast_due:
                self._broadcast_heartbeat()
        self._append_broadcast_due = self._read_broadcast_due = False
        hard, soft = self._hard_state(), self._soft_state()
        prev = self._prev_hard
        rd = Ready(
            appends_before_persist=self._role is Role.LEADER
            and (hard.term, hard.vote) == (prev.term, prev.vote),
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=self._log.unstable_entries(),
            snapshot=self._log.pending_snapshot,
            committed=self._log.next_committed(
                self.cfg.max_committed_per_ready, self.cfg.max_committed_bytes_per_ready
            ),
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
            own = self._prs.get(self.id)
            if self._role is Role.LEADER and own is not None:
                own.maybe_update(rd.entries[-1].index)  # rule 7: persisted, so it counts
                if self._maybe_commit() and self._role is Role.LEADER:
                    self._append_broadcast_due = True  # followers learn the commit
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
            self._send(response, msg.src, term=msg.term, context=0 if pre else self._leader_term)
            if not pre:
                self._election_elapsed = 0
                self._vote = msg.src
        else:
            self._send(response, msg.src, reject=True)

    # -- roles -------------------------------------------------------------------------

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
        reports = [
            self._vote_leader_terms.get(n, 0)
            for n, ok in self._votes.items()
            if ok and n in self._conf.voters
        ]
        self._prior_leader_term = max(reports) if reports and min(reports) > 0 else 0  # rule 9
        self._reset(self._term)
        self._role = Role.LEADER
        self._lead = self.id
        self._leader_term = self._term
        self._lease_revoked = False
        last = self._log.last_index
        self._prs = {node: Progress(next=last + 1) for node in self._members_and_self()}
        self._prs[self.id].match = min(last, self._log.unstable_from - 1)  # rule 7: on disk
        self._prs[self.id].state = ProgressState.REPLICATE
        # An empty entry of the new term lets the commit index move (Figure 8).
        self._append_entry(EntryType.NORMAL, b"")
        self._broadcast_heartbeat()

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
            if not self.cfg.check_quorum or self._quorum_recently_active():
                self._quiet_windows = 0
            else:
                self._quiet_windows += 1
                if self._quiet_windows >= self.cfg.check_quorum_windows:
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
        self._vote_leader_terms = {self.id: self._leader_term}
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
        if msg.type is MessageType.VOTE_RESP:
            self._vote_leader_terms.setdefault(msg.src, msg.context)
        if self._poll_won():
            self._on_poll_won()
        elif self._poll_lost():
            self._become_follower(self._term, NONE)

    # -- follower ----------------------------------------------------------------------

    def _step_follower(self, msg: Message) -> None:
        kind = msg.type
        if kind in _LEADER_MESSAGES:
            self._lead = msg.src
            self._leader_term = self._term
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

    # -- leader ------------------------------------------------------------------------

    # -- reads -------------------------------------------------------------------------

    # -- membership --------------------------------------------------------------------

    # -- plumbing ----------------------------------------------------------------------
