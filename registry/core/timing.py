"""Timing in seconds, presets, and the one conversion to integer ticks.

Every field has a unit and a default (the ``lan`` preset). ``validate()`` names the
contradiction it finds; the most important one is the failover safety rule::

    down_after ≥ (lease + fence_grace) · (1 + max_drift) / (1 − max_drift) + margin

A member may keep running workers until its lease ends plus ``fence_grace`` (measured on
its own clock); the leader declares it down ``down_after`` after last hearing from it (on
the leader's clock). With each clock within ``max_drift`` of true time, the rule makes sure
the member has stopped, or exited, before anybody else starts its names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from registry.core.config import RaftConfig
from registry.core.errors import ConfigError
from registry.core.messages import NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipConfig:
    """Member leases in ticks (converted from ``Timing``)."""

    heartbeat_tick: int
    """A member heartbeats the leader this often."""
    lease_tick: int
    """A lease runs this long from the send of an acknowledged heartbeat."""
    down_after_tick: int
    """The leader declares a member down after this long without a heartbeat."""
    fence_grace_tick: int
    """How long a fenced worker may take to stop before the node exits."""
    handoff_deadline_tick: int
    """``begin_handoff`` must answer within this; then the worker is released stateless."""
    retry_tick: int
    """Re-send a membership proposal or a release that has not been applied after this."""
    leader_extra_tick: int = 0
    """A leader grants itself a lease only until its Raft leader lease ends plus this
    (DESIGN §3, "the previous leader"); it keeps a busy leader's stall tolerance near
    ``lease`` while bounding how long a lost leader can run workers."""
    previous_leader_down_tick: int | None = None
    """How long a new leader of term *T* waits before declaring the leader of *T − 1*
    down (its lease was bounded by that leader's Raft lease, which ended before *T*
    was won). ``None``: ``down_after_tick``, like anybody else."""
    reconcile_everything: bool = False
    """Rescan every name on every Ready: the slow reference the incremental reconcile
    is checked against (tests/sim/test_incremental_reconcile.py). Default off."""
    max_reconcile_names: int = 1000
    """One reconcile pass starts activations and begins handoffs for at most this many
    held names; the rest follow in the next Readies (stops are never deferred)."""
    max_handoffs_in_flight: int = 250
    """A member hands off at most this many names at once; the rest wait their turn.
    When a node joins a cluster of 100k names, each member has thousands to move: all at
    once, every node then applied a release of ~25k names, the joining node started
    ~25k activations, and on 2 cores the member leases lapsed under the load (fences
    and elections). Paced, the same move costs the same work spread over seconds. At
    1000 per member the 100k join still fenced every member in most runs (4 control
    processes, 4 hosts and the client on 2 cores: each control loop got 20–50 % of a
    core); at 250 it fenced none, and finished sooner (3.7–3.9 s against 2.7–7 s)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    tick: float = 0.05
    """Seconds per core tick. Default 0.05 (50 ms)."""
    raft_heartbeat: float = 0.1
    """Raft leader heartbeat, seconds. Default 0.1."""
    election_timeout: float = 0.4
    """Minimum Raft election timeout, seconds (randomized up to twice this). Default 0.4.

    DESIGN §5 says 0.5 s; with the safe ``down_after`` (1.86 s) a leader's death costs an
    election plus ``down_after``, and 0.5–1.0 s elections put failover p99 at 3.3 s in
    ``registry sim cluster``. 0.4–0.8 s (still four heartbeats) brings it to 2.8 s."""
    member_heartbeat: float = 0.2
    """Member → leader heartbeat interval, seconds. Default 0.2."""
    lease: float = 1.0
    """Member lease, seconds from the send of an acknowledged heartbeat. Default 1.0."""
    max_drift: float = 0.05
    """Bound on any clock's rate error against true time (fraction). Default 0.05."""
    margin: float = 0.2
    """Extra safety added to ``down_after``, seconds. Default 0.2."""
    fence_grace: float = 0.5
    """Time a worker gets to stop after its lease is lost, seconds. Default 0.5."""
    down_after: float | None = None
    """Seconds without heartbeats before a member is declared down. Default: derived,
    ``(lease + fence_grace)·(1+max_drift)/(1−max_drift) + margin`` (1.86 s for lan)."""
    handoff_deadline: float = 2.0
    """Deadline for ``begin_handoff``, seconds. Default 2.0."""

    def effective_down_after(self) -> float:
        return self.down_after if self.down_after is not None else self.min_down_after()

    def min_down_after(self) -> float:
        d = self.max_drift
        return (self.lease + self.fence_grace) * (1 + d) / (1 - d) + self.margin

    def validate(self) -> Timing:
        problems = [
            f"{f.name} must be > 0 s (got {getattr(self, f.name)})"
            for f in fields(self)
            if f.name not in ("max_drift", "margin", "down_after") and not getattr(self, f.name) > 0
        ]
        if not 0 <= self.max_drift < 0.5:
            problems.append(f"max_drift must be in [0, 0.5) (got {self.max_drift})")
        if self.margin < 0:
            problems.append(f"margin must be ≥ 0 s (got {self.margin})")
        if not problems:
            if self.raft_heartbeat >= self.election_timeout:
                problems.append(
                    f"raft_heartbeat ({self.raft_heartbeat} s) must be shorter than "
                    f"election_timeout ({self.election_timeout} s)"
                )
            if self.member_heartbeat >= self.lease:
                problems.append(
                    f"member_heartbeat ({self.member_heartbeat} s) must be shorter than "
                    f"lease ({self.lease} s), or leases lapse between heartbeats"
                )
            if self.tick > min(self.raft_heartbeat, self.member_heartbeat):
                problems.append(
                    f"tick ({self.tick} s) must not exceed the heartbeats "
                    f"({self.raft_heartbeat} s, {self.member_heartbeat} s)"
                )
            if self.down_after is not None and self.down_after < self.min_down_after():
                problems.append(
                    f"down_after ({self.down_after} s) must be ≥ (lease + fence_grace)·"
                    f"(1+max_drift)/(1−max_drift) + margin = {self.min_down_after():.3f} s, "
                    "or a member could still run workers when it is declared down"
                )
        if problems:
            raise ConfigError("invalid timing: " + "; ".join(problems))
        return self

    # -- ticks -------------------------------------------------------------------------

    def _ticks(self, seconds: float, *, up: bool) -> int:
        exact = seconds / self.tick
        return max(1, math.ceil(exact - 1e-9) if up else math.floor(exact + 1e-9))

    def raft(self, node_id: NodeId, **extra: object) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            heartbeat_tick=self._ticks(self.raft_heartbeat, up=False),
            election_tick=self._ticks(self.election_timeout, up=True),
            max_drift=self.max_drift,
            **extra,  # type: ignore[arg-type]
        ).validate()

    def membership(self) -> MembershipConfig:
        # Rounding is chosen for safety: the lease and the fence grace (how long a member
        # may still run workers) round down, down_after rounds up and gets one more tick
        # because a tick count only bounds time to within a tick.
        down_after_tick = self._ticks(self.effective_down_after(), up=True) + 1
        extra_tick = self._ticks(max(0.0, self.lease - self.election_timeout), up=False)
        d = self.max_drift
        # The previous leader ran workers at most ``extra`` past the end of its Raft lease
        # (which ended before this term was won) plus ``fence_grace``, on its own clock.
        previous = (extra_tick * self.tick + self.fence_grace) * (1 + d) / (1 - d) + self.margin
        return MembershipConfig(
            heartbeat_tick=self._ticks(self.member_heartbeat, up=False),
            lease_tick=self._ticks(self.lease, up=False),
            down_after_tick=down_after_tick,
            leader_extra_tick=extra_tick,
            previous_leader_down_tick=min(down_after_tick, self._ticks(previous, up=True) + 1),
            fence_grace_tick=self._ticks(self.fence_grace, up=False),
            handoff_deadline_tick=self._ticks(self.handoff_deadline, up=True),
            retry_tick=self._ticks(self.election_timeout, up=True),
        )


PRESETS: dict[str, Timing] = {
    "local": Timing(
        tick=0.02,
        raft_heartbeat=0.04,
        election_timeout=0.2,
        member_heartbeat=0.08,
        lease=0.4,
        margin=0.1,
        fence_grace=0.2,
        handoff_deadline=1.0,
    ),
    "lan": Timing(),
    "wan": Timing(
        tick=0.1,
        raft_heartbeat=0.5,
        election_timeout=2.5,
        member_heartbeat=1.0,
        lease=5.0,
        margin=1.0,
        fence_grace=2.0,
        handoff_deadline=10.0,
    ),
}


def preset(name: str, **overrides: float | None) -> Timing:
    try:
        base = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown timing preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
    unknown = sorted(set(overrides) - {f.name for f in fields(Timing)})
    if unknown:
        raise ConfigError(f"unknown timing field(s) {', '.join(unknown)}")
    return replace(base, **overrides).validate()  # type: ignore[arg-type]
