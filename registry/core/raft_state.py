"""The state every layer of ``RawNode`` shares: its fields, quorum arithmetic, membership
and the plumbing that queues messages (see ``registry.core.raft`` for the rules).

``RawNode`` is assembled from layers, one module each, so that no module passes ~800
lines: this one, ``raft_reads`` (ReadIndex and the leader lease), ``raft_snapshots``
(snapshot transfer), ``raft_replication`` (the leader's replication and commit) and
``raft`` (inputs, Ready, elections). A layer may call only the layers it inherits from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from registry.core.conf import conf_in_log
from registry.core.config import RaftConfig
from registry.core.errors import (
    NotLeader,
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
    Handover,
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
from registry.core.progress import Progress


def _no_note() -> Handover | None:
    return None


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


class _RaftState:
    """Fields and shared helpers of one Raft peer; see ``RawNode``."""

    # -- state -------------------------------------------------------------------------

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
        self._quiet_windows = 0  # rule 2: check-quorum windows in a row without a quorum
        self._ticks_since_leader = 0  # rule 3: a fresh start counts as "just heard"
        self._randomized_timeout = self._new_election_timeout()
        self._votes: dict[NodeId, bool] = {}
        # Rule 9: the latest term in which this node knew a leader (itself included)
        # since it started (0: none yet; what it knew before a restart is lost), the
        # same as each granted vote reported, and what the votes that made this node
        # leader add up to.
        self._leader_term = 0
        self._vote_leader_terms: dict[NodeId, int] = {}
        self._prior_leader_term = 0

        self._transferee: NodeId = NONE
        self._transfer_elapsed = 0
        self.handover_note: Callable[[], Handover | None] = _no_note
        """What a ``TIMEOUT_NOW`` carries to the node it asks to campaign (``handover``):
        opaque to Raft, asked for as the message is built (the application's failure
        detector counts, ``registry.core.membership`` rule 5)."""
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

    # -- roles shared by every layer ---------------------------------------------------

    def _become_follower(self, term: int, lead: NodeId) -> None:
        self._reset(term)
        self._role = Role.FOLLOWER
        self._lead = lead
        if lead:
            self._leader_term = term

    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = NONE
        self._lead = NONE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._quiet_windows = 0
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

    # -- quorum ------------------------------------------------------------------------

    def _quorum_value(self, value_of: _ValueOf) -> int:
        """The largest value that a quorum of voters has reached."""
        values = sorted((value_of(node) for node in self._conf.voters), reverse=True)
        if not values:
            return 0
        return values[self._quorum() - 1]

    def _quorum(self) -> int:
        return len(self._conf.voters) // 2 + 1

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

    def _send_timeout_now(self, to: NodeId) -> None:
        self._send(MessageType.TIMEOUT_NOW, to, handover=self.handover_note())

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

    @property
    def id(self) -> NodeId:
        return self.cfg.node_id


class _ValueOf(Protocol):
    def __call__(self, node: NodeId, /) -> int: ...
