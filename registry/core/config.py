"""Raft configuration: integer ticks in the core, seconds only at the edge (``from_seconds``).

Each field documents its unit and default. ``validate()`` names the contradiction it finds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from registry.core.errors import ConfigError
from registry.core.messages import NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    node_id: NodeId
    """This node's identity. Required."""

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    """Bootstrap voters (used only when storage holds no snapshot). Empty for a node that
    joins an existing cluster and waits to be contacted by its leader."""

    learners: frozenset[NodeId] = field(default_factory=frozenset)
    """Bootstrap learners (non-voting members). Default: none."""

    election_tick: int = 10
    """Minimum election timeout, in ticks. The randomized timeout is drawn from
    ``[election_tick, 2 * election_tick)``. Default 10 (500 ms at 50 ms per tick)."""

    heartbeat_tick: int = 2
    """Leader heartbeat interval, in ticks. Default 2 (100 ms at 50 ms per tick)."""

    pre_vote: bool = True
    """Run a pre-vote round before bumping the term, so a rejoining partitioned node
    cannot disrupt a healthy leader. Default on."""

    check_quorum: bool = True
    """A leader that has not heard from a quorum in ``check_quorum_windows`` windows of
    ``election_tick`` in a row steps down; followers ignore votes while they heard from a
    live leader within ``election_tick`` (leader stickiness). Default on."""

    check_quorum_windows: int = 2
    """Quiet windows in a row before a leader steps down (``raft`` rule 2). With 1 a
    follower whose process stalled for one election timeout (a busy 2-core machine
    failing 26k names over) made the leader step down, and the election that followed
    needed the same stalled voters: terms and fences cascaded. Default 2."""

    max_drift: float = 0.05
    """Bound on clock *rate* drift between nodes (fraction). The leader lease is shortened
    so it expires before any follower's stickiness window can. Default 0.05."""

    max_entries_per_msg: int = 64
    """Batching: at most this many entries in one APPEND. Default 64."""

    max_bytes_per_msg: int = 4 << 20
    """Batching: at most this many bytes of entry data in one APPEND (an entry larger
    than this still goes, alone). Keeps every APPEND well under the peer message limit
    (64 MiB), however many large entries queue up. Default 4 MiB."""

    max_inflight: int = 256
    """At most this many unacknowledged APPENDs to one follower. Default 256."""

    max_inflight_bytes: int = 32 << 20
    """At most this many bytes of entry data unacknowledged to one follower (at least
    one APPEND is always allowed): a follower that falls behind on large entries is
    fed at the pace it acknowledges instead of being buried. Default 32 MiB."""

    snapshot_threshold: int = 1024
    """``should_compact()`` turns true once this many applied entries sit in the log.
    Default 1024 entries."""

    snapshot_chunk_bytes: int = 64 * 1024
    """Snapshots are sent in chunks of this many bytes. Default 64 KiB."""

    max_committed_per_ready: int = 4096
    """At most this many committed entries handed out in one Ready. Default 4096."""

    max_committed_bytes_per_ready: int = 128 * 1024
    """...and past the first, at most this many bytes of entry data. Applying is CPU the
    node spends without ticking or answering peers: a node that joins behind 100 entries
    of 1000 registrations each applied them in one Ready (a second at 100k names) and
    lost its member lease. Default 128 KiB (about 8000 names in 1000-name entries)."""

    def validate(self) -> RaftConfig:
        problems: list[str] = []
        if not self.node_id:
            problems.append("node_id must not be empty")
        if self.heartbeat_tick < 1:
            problems.append(f"heartbeat_tick must be ≥ 1 (got {self.heartbeat_tick})")
        if self.election_tick <= self.heartbeat_tick:
            problems.append(
                f"election_tick ({self.election_tick}) must be greater than heartbeat_tick "
                f"({self.heartbeat_tick}), or followers time out between heartbeats"
            )
        if not 0 <= self.max_drift < 0.5:
            problems.append(f"max_drift must be in [0, 0.5) (got {self.max_drift})")
        if self.lease_ticks() < 1 and self.check_quorum:
            problems.append(
                f"election_tick ({self.election_tick}) is too short for a leader lease "
                f"with max_drift {self.max_drift}"
            )
        if self.voters & self.learners:
            problems.append(
                f"nodes cannot be both voter and learner: {sorted(self.voters & self.learners)}"
            )
        for name, value in (
            ("check_quorum_windows", self.check_quorum_windows),
            ("max_entries_per_msg", self.max_entries_per_msg),
            ("max_bytes_per_msg", self.max_bytes_per_msg),
            ("max_inflight", self.max_inflight),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("snapshot_threshold", self.snapshot_threshold),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_committed_per_ready", self.max_committed_per_ready),
            ("max_committed_bytes_per_ready", self.max_committed_bytes_per_ready),
        ):
            if value < 1:
                problems.append(f"{name} must be ≥ 1 (got {value})")
        if problems:
            raise ConfigError("invalid raft config: " + "; ".join(problems))
        return self

    def lease_ticks(self) -> int:
        """How long (leader ticks, from the *send* of a quorum-acked heartbeat) the leader
        may assume nobody else can be elected.

        A follower ignores votes for ``election_tick`` of *its* ticks after hearing from
        the leader, which it does after the leader sent. With rates within ±max_drift,
        ``L`` leader ticks last at most ``L/(1-d)`` real units and ``E`` follower ticks at
        least ``E/(1+d)``, so ``L ≤ E·(1-d)/(1+d)``; one tick more is taken off because a
        tick counter only says time lies within one tick."""
        d = self.max_drift
        return math.floor(self.election_tick * (1 - d) / (1 + d)) - 1

    @classmethod
    def from_seconds(
        cls,
        *,
        node_id: NodeId,
        tick_s: float,
        heartbeat_s: float,
        election_s: float,
        **fields: object,
    ) -> RaftConfig:
        """Convert a timing in seconds into ticks (the only place that does)."""
        if tick_s <= 0:
            raise ConfigError(f"tick must be > 0 s (got {tick_s})")
        return cls(
            node_id=node_id,
            heartbeat_tick=max(1, round(heartbeat_s / tick_s)),
            election_tick=max(1, round(election_s / tick_s)),
            **fields,  # type: ignore[arg-type]
        ).validate()
