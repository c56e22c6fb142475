"""Values that cross the boundary of the Raft core: messages, entries, snapshots, Ready.

Every value here is a frozen, slotted, keyword-only dataclass (house rule 5), so the
simulator and the wire codec can share, hash and compare them freely.

One ``Message`` type carries every Raft message kind (as etcd-io/raft's ``raftpb.Message``
does); the fields a kind uses are listed beside ``MessageType``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str
"""A node's stable identity (e.g. ``"n1"``). The empty string means "nobody"."""

NONE: NodeId = ""


class MessageType(enum.IntEnum):
    """Kinds of Raft messages and the fields each one uses.

    - ``PRE_VOTE``/``VOTE``: ``term`` (the term campaigned for), ``index``/``log_term``
      (candidate's last log position), ``force`` (leadership transfer: ignore stickiness).
    - ``PRE_VOTE_RESP``/``VOTE_RESP``: ``term``, ``reject``.
    - ``APPEND``: ``index``/``log_term`` (position before ``entries``), ``entries``, ``commit``.
    - ``APPEND_RESP``: ``index`` (last index now matching, or the rejected index),
      ``reject``, ``reject_hint``/``log_term`` (follower's last index and its term at the
      hint, for fast back-off).
    - ``HEARTBEAT``: ``commit``, ``context`` (the leader's heartbeat sequence number).
    - ``HEARTBEAT_RESP``: ``context`` echoed.
    - ``SNAPSHOT``: ``snapshot`` (metadata), ``chunk``, ``offset``, ``done``.
    - ``SNAPSHOT_RESP``: ``offset`` (next byte wanted), ``reject`` (restart from 0).
    - ``TIMEOUT_NOW``: the leader asks the transfer target to campaign at once;
      ``handover`` (opaque to Raft) carries its failure detector's counts to the target
      (``registry.core.membership`` rule 5).
    - ``READ_INDEX``: a follower forwards a read request (``context``) to the leader.
    - ``READ_INDEX_RESP``: ``index`` (safe read index), ``context``, ``reject``.
    """

    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13


class EntryType(enum.IntEnum):
    NORMAL = 0
    """Application data (a registry command), opaque to Raft."""
    CONF_CHANGE = 1
    """A single-server membership change; ``data`` is an encoded ``ConfChange``."""


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    """Add a voter, or promote an existing learner."""
    ADD_LEARNER = 1
    """Add a non-voting member (never used to demote a voter)."""
    REMOVE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChange:
    type: ConfChangeType
    node: NodeId

    def encode(self) -> bytes:
        return f"{int(self.type)}:{self.node}".encode()

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        kind, _, node = data.decode().partition(":")
        return ConfChange(type=ConfChangeType(int(kind)), node=node)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfState:
    """Who takes part in consensus. Voters count towards quorums; learners only replicate."""

    voters: frozenset[NodeId] = frozenset()
    learners: frozenset[NodeId] = frozenset()

    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    index: int
    """Last log index the snapshot covers."""
    term: int
    """Term of the entry at ``index``."""
    conf: ConfState


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes
    """The application state machine at ``meta.index`` (opaque to Raft)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must be on stable storage before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSilence:
    """How long a handing-over leader has not heard from one member."""

    node: NodeId
    ticks: int
    acked: bool = False
    """``True``: it acknowledged the member that long ago, in its own term. ``False``:
    it never did, and ``ticks`` is the bound it inherited when it won."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Handover:
    """What a ``TIMEOUT_NOW`` carries (``registry.core.membership`` rule 5)."""

    prior: NodeId = NONE
    """The leader of the last leased term before the sender's (the one it took over
    from, itself if it led that term too), or none if it did not know."""
    members: tuple[MemberSilence, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    type: MessageType
    src: NodeId
    dst: NodeId
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: int = 0
    force: bool = False
    snapshot: SnapshotMeta | None = None
    chunk: bytes = b""
    offset: int = 0
    done: bool = False
    handover: Handover | None = None


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftState:
    """Volatile state worth reporting (not persisted)."""

    leader: NodeId
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """A read request (``context``) may be served once ``index`` is applied locally."""

    index: int
    context: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """Everything the shell must do, in this order (etcd-io/raft's contract):

    1. persist ``snapshot`` (if any), then ``entries`` (truncating the stored log at
       ``entries[0].index`` first), then ``hard_state`` (if any) — and fsync;
    2. send ``messages``;
    3. restore the state machine from ``snapshot`` (if any), then apply ``committed``;
       serve ``read_states`` once their index is applied;
    4. call ``advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    appends_before_persist: bool = False
    """A leader whose term and vote are already on disk: its APPEND and HEARTBEAT
    ``messages`` may be sent before (or while) ``entries`` are persisted (Raft thesis
    §10.2.1; rule 7 of ``registry.core.raft``); every other message still waits for the
    persist. A shell that ignores this sends everything after, as before."""
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.committed
            or self.messages
            or self.read_states
        )

    @property
    def must_sync(self) -> bool:
        """True when stable storage must be fsync'd before ``messages`` go out."""
        return bool(self.entries or self.hard_state or self.snapshot)


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistedState:
    """What a node finds on stable storage when it restarts."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    """Entries after the snapshot, in index order."""
