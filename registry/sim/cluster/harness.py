"""The cluster harness: N registry nodes (``Replica``) with model worker runtimes.

Each ``ClusterHost`` is the world's ``Process`` for one node and plays the IO shell as
``Replica``'s contract says, for every ``ReplicaReady`` in order: persist the incarnation
→ persist Raft's snapshot, entries and hard state → persist the compaction → send Raft
and member messages → run the effects on the node's runtime → tell the clients what was
applied → ``advance``. Its disk (``RaftDisk`` plus the incarnation) survives crashes; a
restart boots a ``Replica`` with ``incarnation = persisted + 1``.

Nodes ``n1..nN``: the first ``voters`` bootstrap the Raft group; the rest are *learner
members* that boot with no configuration and are added by the harness
(``ConfChange(ADD_LEARNER)`` at the leader) — they host workers like anyone else.

``ClusterSim`` also watches the topology for the failover checker: after every crash,
restart, pause, resume and network change it recomputes the majority group
(``majority_group``, with paused nodes counted as cut off) and reports changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

from registry.core.commands import Checkpoint, NameSpec, Register, Remind
from registry.core.config import RaftConfig
from registry.core.errors import ProposalRejected
from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import ConfChange, ConfChangeType, Message, Role
from registry.core.replica import Applied, Forward, PeerMessage, Replica
from registry.core.state import RegistryState
from registry.core.timing import PRESETS, MembershipConfig, Timing
from registry.sim.cluster.checkers import ClusterSuite
from registry.sim.cluster.observations import (
    Assigned,
    CheckpointApplied,
    LeaderElected,
    MajorityChanged,
    RegisterApplied,
    ReminderApplied,
)
from registry.sim.cluster.reminders import ReminderPlan
from registry.sim.cluster.runtime import HandoffBehaviour, Ledger, NodeRuntime, decode_count
from registry.sim.engine.clock import ClockConfig
from registry.sim.engine.disk import RaftDisk
from registry.sim.engine.network import NetworkConfig
from registry.sim.faults import NO_FAULTS, AcceptsStaleCheckpoints, SimFaults
from registry.sim.harness import Sim

LEARNER_CHECK_US = 300_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    nodes: int = 5
    """Number of nodes, ids ``n1..nN``. Default 5."""
    voters: int = 5
    """The first ``voters`` nodes bootstrap Raft; the others join as learners. Default 5."""
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Roles per node (default: none)."""
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Worker kinds per node (default: none listed, i.e. any kind)."""
    timing: Timing = field(default_factory=lambda: PRESETS["lan"])
    """Default: the ``lan`` preset."""
    membership: MembershipConfig | None = None
    """Override the member timing derived from ``timing`` — bypassing its validation.
    Only the unsafe-switch test sets it."""
    snapshot_threshold: int = 64
    """Applied entries before compaction. Default 64 (small, so snapshots are common)."""
    snapshot_chunk_bytes: int = 4096
    """Default 4 KiB, so a registry snapshot takes several chunks."""
    max_entries_per_msg: int = 8
    """Default 8 (small on purpose): followers catch up in several rounds."""
    max_inflight: int = 8
    """Default 8 (small on purpose): flow control is exercised."""
    handoff: HandoffBehaviour = field(default_factory=HandoffBehaviour)
    clock: ClockConfig = field(default_factory=ClockConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    faults: SimFaults = NO_FAULTS
    """Planted bugs (``registry.sim.faults``); default none."""

    @property
    def ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]


def _trace_key(msg: PeerMessage) -> tuple[object, ...]:
    if isinstance(msg, Message):
        return (int(msg.type), msg.term, msg.index, msg.commit, len(msg.entries), msg.offset)
    if isinstance(msg, MemberHeartbeat):
        return ("hb", msg.seq, msg.incarnation, msg.has_lease)
    if isinstance(msg, MemberAck):
        return ("ack", msg.seq, msg.incarnation, msg.index)
    assert isinstance(msg, Forward)
    return ("fwd", len(msg.data))


def majority_group(
    nodes: Sequence[str],
    voters: frozenset[str],
    up: Callable[[str], bool],
    blocked: Callable[[str, str], bool],
) -> tuple[str, ...] | None:
    """The unique maximal set of up nodes, pairwise connected both ways, holding a
    majority of ``voters``; ``None`` if there is none or several (bridges, one-way cuts)."""
    live = [n for n in sorted(nodes) if up(n)]
    linked = {(a, b) for a, b in combinations(live, 2) if not blocked(a, b) and not blocked(b, a)}
    cliques: list[frozenset[str]] = []
    for mask in range(1, 1 << len(live)):
        members = [live[i] for i in range(len(live)) if mask >> i & 1]
        if 2 * sum(m in voters for m in members) <= len(voters):
            continue
        if all(pair in linked for pair in combinations(members, 2)):
            cliques.append(frozenset(members))
    maximal = [c for c in cliques if not any(c < d for d in cliques)]
    return tuple(sorted(maximal[0])) if len(maximal) == 1 else None


class NodeView:
    """The cluster harness's one read of a live ``Replica``: role, term, indexes,
    configuration, lease, incarnation, registry state. Everything in
    ``registry.sim.cluster`` reads a node through it, so a change of the core's read
    surface (issue 20's ``ReplicaView``) changes this class, not its callers."""

    __slots__ = ("_replica",)

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    @property
    def role(self) -> Role:
        return self._replica.raft.role

    @property
    def term(self) -> int:
        return self._replica.raft.term

    @property
    def commit_index(self) -> int:
        return self._replica.raft.commit_index

    @property
    def applied_index(self) -> int:
        return self._replica.raft.applied_index

    def raft_members(self) -> frozenset[str]:
        """Voters and learners of its Raft configuration."""
        return self._replica.raft.conf.members()

    @property
    def incarnation(self) -> int:
        return self._replica.incarnation

    @property
    def ticks(self) -> int:
        return self._replica.agent.ticks

    def has_lease(self) -> bool:
        return self._replica.agent.has_lease()

    def lease_remaining(self) -> int:
        return self._replica.agent.lease_remaining()

    @property
    def state(self) -> RegistryState:
        return self._replica.state


class ClientHooks:
    """What the client side hears about (the workload overrides these)."""

    def on_applied(self, node: str, applied: Applied) -> None: ...
    def on_restored(self, node: str, index: int) -> None: ...
    def on_crash(self, node: str) -> None: ...


class ClusterHost:
    """One node: a ``Replica`` and a runtime (lost on crash), a disk (kept)."""

    def __init__(self, sim: ClusterSim, node_id: str, raft: RaftConfig) -> None:
        self.sim = sim
        self.id = node_id
        self.raft_config = raft
        self.disk = RaftDisk()
        self.incarnation = 0
        """The persisted incarnation."""
        self.replica: Replica | None = None
        self.view: NodeView | None = None
        """How everything but the shell loop reads the replica (``None`` while down)."""
        self.runtime: NodeRuntime | None = None
        self.boot_us = 0
        self.last_token: dict[str, int] = {}
        """name → the token it last started with here (kept across crashes; read only by
        the ``reuse_token`` plant)."""

    # -- Process -----------------------------------------------------------------------

    def on_start(self, rng: random.Random) -> None:
        sim = self.sim
        self.incarnation += 1  # persisted before the node says anything
        self.boot_us = sim.world.now_us
        runtime_rng = random.Random(rng.getrandbits(64))
        self.replica = Replica(
            self.raft_config,
            sim.member_config,
            rng,
            incarnation=self.incarnation,
            persisted=self.disk.load(),
            address=f"{self.id}:7000",
            roles=sim.config.roles.get(self.id, ()),
            kinds=sim.config.kinds.get(self.id, ()),
        )
        self.view = NodeView(self.replica)
        self.runtime = NodeRuntime(
            self, sim.ledger, sim.config.handoff, runtime_rng, sim.config.faults
        )
        self.settle()

    def on_tick(self) -> None:
        replica, runtime = self.replica, self.runtime
        assert replica is not None and runtime is not None
        replica.tick()
        self.settle()
        runtime.check_deadlines(self.ticks())

    def on_message(self, src: str, msg: PeerMessage) -> None:
        assert self.replica is not None
        self.replica.step(msg)
        self.settle()

    def on_resume(self, missed_ticks: int) -> None:
        replica, runtime = self.replica, self.runtime
        assert replica is not None and runtime is not None
        for _ in range(missed_ticks):
            replica.tick()
        self.settle()
        runtime.check_deadlines(self.ticks())

    def on_crash(self) -> None:
        if self.runtime is not None:
            self.runtime.crash()
        self.replica = None
        self.view = None
        self.runtime = None
        self.sim.hooks.on_crash(self.id)

    # -- the shell loop ----------------------------------------------------------------

    def settle(self) -> None:
        replica, runtime = self.replica, self.runtime
        assert replica is not None and runtime is not None
        sim, disk = self.sim, self.disk
        send = sim.world.send
        while replica.has_ready():
            if sim.config.faults.stale_checkpoint:  # the plant (registry.sim.faults)
                replica.state.__class__ = AcceptsStaleCheckpoints
            rd = replica.ready()
            if rd.incarnation is not None:
                if rd.incarnation <= self.incarnation:
                    raise AssertionError(
                        f"{self.id}: incarnation {rd.incarnation} after {self.incarnation}"
                    )
                self.incarnation = rd.incarnation
                sim.fences += 1
                sim.world.record("fenced", self.id, rd.incarnation)
            raft = rd.raft
            if raft.snapshot is not None:
                disk.install_snapshot(raft.snapshot)
            if raft.entries:
                disk.append(raft.entries)
            if raft.hard_state is not None:
                disk.save_hard_state(raft.hard_state)
            if rd.compaction is not None:
                if rd.compaction.meta.index > disk.offset:
                    disk.compact(rd.compaction)
                else:
                    sim.stale_compactions += 1  # an installed snapshot already covers it
            for msg in raft.messages:
                send(self.id, msg.dst, msg)
            for peer in rd.messages:
                send(self.id, peer.dst, peer)
            # Entries are applied before the effects their reconcile produced: observe
            # them in that order, or a name registered and started in one Ready looked
            # started before it was registered (the checkpoint checker then wanted the
            # state of an earlier registration restored).
            for applied in rd.applied:
                sim.note_applied(self.id, applied)
            for effect in rd.effects:
                runtime.run(effect)
            if raft.snapshot is not None:
                sim.snapshots_installed += 1
                sim.hooks.on_restored(self.id, raft.snapshot.meta.index)
            for applied in rd.applied:
                sim.hooks.on_applied(self.id, applied)
            if rd.applied:
                runtime.reminders.on_applied()
            if rd.changed:
                sim.note_assignments(rd.changed, replica.state)
            if raft.committed:
                sim.world.record("applied", self.id, raft.committed[-1].index)
            replica.advance(rd)
        view = self.view
        assert view is not None
        if view.has_lease():
            clock = sim.world.clock(self.id)
            tick = view.ticks + view.lease_remaining()
            runtime.note_lease(self.boot_us + clock.phase_us + (tick - 1) * clock.period_us)
        sim.after_step(self)

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        assert self.replica is not None
        self.replica.handoff_done(name, token, state)
        self.settle()

    def stopped(self, name: str, token: int) -> None:
        assert self.replica is not None
        self.replica.stopped(name, token)
        self.settle()

    # -- queries -----------------------------------------------------------------------

    def has_lease(self) -> bool:
        return self.view is not None and self.view.has_lease()

    def ticks(self) -> int:
        return self.view.ticks if self.view is not None else 0

    def is_up(self) -> bool:
        return self.view is not None

    def leading_term(self) -> int | None:
        view = self.view
        return view.term if view is not None and view.role is Role.LEADER else None

    def propose_conf_change(self, change: ConfChange) -> int:
        """Hand ``change`` to the node's Raft (the harness adds learner members)."""
        assert self.replica is not None
        return self.replica.raft.propose_conf_change(change)


class ClusterSim(Sim[ClusterHost, PeerMessage]):
    """The cluster: world, hosts, runtimes' ledger, checkers, and the glue."""

    def __init__(
        self, *, rng: random.Random, config: ClusterConfig, suite: ClusterSuite | None = None
    ) -> None:
        super().__init__(
            rng=rng,
            clock=config.clock,
            network=config.network,
            suite=suite or ClusterSuite(),
            trace_key=_trace_key,
        )
        self.config = config
        timing = config.timing
        self.member_config = config.membership or timing.membership()
        self.ledger = Ledger(lambda: self.world.now_us, self.observe)
        self.hooks = ClientHooks()
        self.reminder_plans: dict[str, ReminderPlan] = {}
        """Names whose workers keep a durable reminder (the workload fills it)."""
        self.snapshots_installed = 0
        self.stale_compactions = 0
        self.elections = 0
        self.transfers = 0
        """Leadership transfers started on purpose (``registry.sim.cluster.transfers``)."""
        self.fences = 0
        """Lease lapses that made a live node take a new incarnation."""
        ids = config.ids
        self.voters = frozenset(ids[: config.voters])
        self.learners = tuple(ids[config.voters :])
        for node_id in ids:
            voters = self.voters if node_id in self.voters else frozenset()
            raft = replace(
                timing.raft(
                    node_id,
                    voters=voters,
                    snapshot_threshold=config.snapshot_threshold,
                    snapshot_chunk_bytes=config.snapshot_chunk_bytes,
                    max_entries_per_msg=config.max_entries_per_msg,
                    max_inflight=config.max_inflight,
                ),
                max_drift=config.clock.max_drift,
            ).validate()
            self.hosts[node_id] = ClusterHost(self, node_id, raft)
        self._group: tuple[str, ...] | None = None
        self._leader_terms: dict[str, int] = {}
        self.last_leader = ""
        """The node most recently seen acting as leader of the highest term so far (the
        failover checker restarts its clock when this node leaves the majority group)."""
        self._top_leader_term = 0
        self._assigned: dict[str, int] = {}
        """name → the highest token the log is known to have given it."""
        self._durable_seen: set[int] = set()
        """Indices of checkpoint and register entries already reported."""
        self.world.listeners.append(self._on_lifecycle)
        self.world.network.listeners.append(self._on_topology)

    def boot(self) -> None:
        super().boot()
        self._on_topology()
        if self.learners:
            self.world.every(LEARNER_CHECK_US, self._add_learners)

    # -- topology ----------------------------------------------------------------------

    def _on_lifecycle(self, event: str, node: str) -> None:
        self._on_topology()

    def _on_topology(self) -> None:
        world = self.world
        group = majority_group(
            world.node_ids, self.voters, self._reachable, world.network.is_blocked
        )
        if group != self._group:
            self._group = group
            self.observe(
                MajorityChanged(
                    at_us=world.now_us,
                    group=group,
                    leader=self.last_leader,
                    linked=self._linked(self.last_leader),
                )
            )

    def _linked(self, leader: str) -> tuple[str, ...]:
        """The up nodes linked both ways with ``leader``, it included."""
        if not leader or not self._reachable(leader):
            return ()
        blocked = self.world.network.is_blocked
        return tuple(
            node
            for node in sorted(self.world.node_ids)
            if self._reachable(node)
            and (node == leader or not (blocked(leader, node) or blocked(node, leader)))
        )

    def _reachable(self, node: str) -> bool:
        """Up and not paused: a paused node is as cut off as an isolated one."""
        return self.world.is_up(node) and not self.world.is_paused(node)

    # -- learners ----------------------------------------------------------------------

    def _add_learners(self) -> None:
        """Add learner members the leader's configuration lacks, one change at a time."""
        leader = self.leader()
        if leader is None or leader.view is None:
            return
        members = leader.view.raft_members()
        for node in self.learners:
            if node in members:
                continue
            try:
                index = leader.propose_conf_change(
                    ConfChange(type=ConfChangeType.ADD_LEARNER, node=node)
                )
            except ProposalRejected:
                return
            self.world.record("add-learner", leader.id, node, index)
            leader.settle()
            return

    # -- per-event ---------------------------------------------------------------------

    def note_assignments(self, names: Sequence[str], state: RegistryState) -> None:
        """Report each new holder once, when the first replica applies it."""
        now = self.world.now_us
        for name in names:
            record = state.names.get(name)
            if record is None or not record.holder:
                continue
            if record.token > self._assigned.get(name, 0):
                self._assigned[name] = record.token
                self.observe(Assigned(at_us=now, name=name, node=record.holder, token=record.token))

    def note_applied(self, node: str, applied: Applied) -> None:
        """Report each checkpoint and reminder entry, and each registration, once: when the first
        replica applies it (every replica applies the same entry with the same result)."""
        command = applied.command
        durable = Checkpoint | Register | Remind
        if not isinstance(command, durable) or applied.index in self._durable_seen:
            return
        now = self.world.now_us
        if isinstance(command, Remind):
            self._durable_seen.add(applied.index)
            self.observe(
                ReminderApplied(
                    at_us=now,
                    node=node,
                    index=applied.index,
                    name=command.name,
                    token=command.token,
                    reminder=command.reminder,
                    op=command.op,
                    due=command.due,
                    every=command.every,
                    period=command.period,
                    accepted=applied.result.ok,
                )
            )
        elif isinstance(command, Checkpoint):
            self._durable_seen.add(applied.index)
            self.observe(
                CheckpointApplied(
                    at_us=now,
                    node=node,
                    index=applied.index,
                    name=command.name,
                    token=command.token,
                    seq=command.seq,
                    count=decode_count(command.state),
                    accepted=applied.result.ok,
                )
            )
        elif applied.result.ok:
            self._durable_seen.add(applied.index)
            names = tuple(spec.name for spec in command.specs)
            self.observe(RegisterApplied(at_us=now, index=applied.index, names=names))

    def after_step(self, host: ClusterHost) -> None:
        term = host.leading_term()
        if term is None:
            return
        if term >= self._top_leader_term:  # a deposed leader of an older term is not it
            if term > self._top_leader_term:
                linked = self._linked(host.id)
                self.observe(LeaderElected(at_us=self.world.now_us, leader=host.id, linked=linked))
            self._top_leader_term = term
            self.last_leader = host.id
        if term > self._leader_terms.get(host.id, 0):
            self._leader_terms[host.id] = term
            self.elections += 1
            self.world.record("leader", host.id, term)

    # -- queries (omniscient: for the workload, the runner and the calm phase) ---------

    def eligible(self, spec: NameSpec) -> tuple[str, ...]:
        """Nodes that could ever host ``spec`` (roles, kinds and priority list)."""
        allowed = None if spec.priority is None else {n for tier in spec.priority for n in tier}
        config = self.config
        return tuple(
            node
            for node in config.ids
            if set(spec.roles) <= set(config.roles.get(node, ()))
            and (not config.kinds.get(node) or spec.kind in config.kinds[node])
            and (allowed is None or node in allowed)
        )
