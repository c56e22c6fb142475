"""The Raft harness: N ``RawNode``s on the simulated world, each with a disk and an app.

Each ``RaftHost`` is the world's ``Process`` for one node and plays the IO shell exactly as
the Ready contract says: persist (snapshot, entries, hard state) → send → restore and
apply → ``advance``, looping while ``has_ready()``, then compacting whenever the core
asks. ``RaftSim`` owns the hosts, the checker suite and the observations that link them:
after every event a host handles, it looks for a new leader and re-samples who holds a
leader lease (so the lease checker sees every instant at which that set changes).

Settings are deliberately hostile: a snapshot every 40 applied entries, 256-byte chunks,
≥ 1 KiB snapshots — so compaction and chunked installs happen all the time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from registry.core.config import RaftConfig
from registry.core.messages import Entry, Message, ReadState, Ready, Role
from registry.core.raft import RawNode
from registry.sim.engine.clock import ClockConfig
from registry.sim.engine.disk import RaftDisk
from registry.sim.engine.network import NetworkConfig
from registry.sim.harness import Sim
from registry.sim.raft.checkers import CheckerSuite
from registry.sim.raft.hashchain import HashChain
from registry.sim.raft.observations import (
    Applied,
    LeaderElected,
    LeaseHolder,
    LeaseSample,
    LogSample,
    NodeLog,
    ReadServed,
    Restored,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HarnessConfig:
    nodes: int = 3
    """Number of nodes, ids ``n1..nN``, all bootstrap voters. Default 3."""
    election_tick: int = 10
    """Default 10 ticks (500 ms at 50 ms per tick)."""
    heartbeat_tick: int = 2
    """Default 2 ticks (100 ms)."""
    snapshot_threshold: int = 40
    """Applied entries before compaction. Default 40 (small on purpose)."""
    snapshot_chunk_bytes: int = 256
    """Default 256 bytes, so every ≥ 1 KiB snapshot takes several chunks."""
    max_entries_per_msg: int = 3
    """Default 3 (small on purpose): followers often acknowledge only part of what a new
    leader holds, which is when the Figure-8 commit rule matters."""
    max_inflight: int = 4
    """Default 4 (small on purpose): flow control and probing are exercised."""
    clock: ClockConfig = field(default_factory=ClockConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)


def _trace_key(msg: Message) -> tuple[int, ...]:
    return (int(msg.type), msg.term, msg.index, msg.commit, len(msg.entries), msg.offset)


class AppHooks:
    """What the client side wants to hear about (the workload overrides these)."""

    def on_applied(self, host: str, entry: Entry) -> None: ...
    def on_restored(self, host: str, index: int) -> None: ...
    def on_crash(self, host: str) -> None: ...


class RaftHost:
    """One simulated node: a ``RawNode`` (lost on crash), a ``RaftDisk`` (kept) and a
    ``HashChain`` app (lost on crash, rebuilt from the disk snapshot on restart)."""

    def __init__(self, sim: RaftSim, node_id: str, config: RaftConfig) -> None:
        self.sim = sim
        self.id = node_id
        self.config = config
        self.disk = RaftDisk()
        self.node: RawNode | None = None
        self.app = HashChain()
        self.leader_term = 0
        """Highest term in which this node was already reported as leader."""

    # -- Process -----------------------------------------------------------------------

    def on_start(self, rng: random.Random) -> None:
        self.node = RawNode(self.config, rng, self.disk.load())
        snapshot = self.disk.snapshot
        self.app = HashChain.decode(snapshot.data) if snapshot else HashChain()
        index = snapshot.meta.index if snapshot else 0
        self.sim.observe(
            Restored(at_us=self.sim.world.now_us, node=self.id, index=index, digest=self.app.digest)
        )
        self.settle()

    def on_tick(self) -> None:
        assert self.node is not None
        self.node.tick()
        self.settle()

    def on_message(self, src: str, msg: Message) -> None:
        assert self.node is not None
        self.node.step(msg)
        self.settle()

    def on_resume(self, missed_ticks: int) -> None:
        assert self.node is not None
        for _ in range(missed_ticks):
            self.node.tick()
        self.settle()

    def on_crash(self) -> None:
        self.node = None
        self.app = HashChain()
        self.sim.hooks.on_crash(self.id)
        self.sim.sample_leases(self)

    def replace_machine(self) -> None:
        """While crashed: a blank disk, and a config that joins instead of bootstrapping
        (it learns the membership from the leader's snapshot)."""
        assert self.node is None
        self.disk = RaftDisk()
        self.config = replace(self.config, voters=frozenset(), learners=frozenset())
        self.sim.world.record("replaced", self.id)

    # -- the shell loop ----------------------------------------------------------------

    def settle(self) -> None:
        """Drain every Ready, compact if asked, then report to the checkers."""
        node = self.node
        assert node is not None
        while node.has_ready():
            ready = node.ready()
            self._handle(ready)
            node.advance(ready)
        if node.should_compact():
            index = node.applied_index
            if self.app.index != index:
                raise AssertionError(f"{self.id}: app at {self.app.index}, core at {index}")
            self.disk.compact(node.compact(index, self.app.encode()))
        self.sim.after_step(self)

    def _handle(self, ready: Ready) -> None:
        disk, sim = self.disk, self.sim
        if ready.snapshot is not None:
            disk.install_snapshot(ready.snapshot)
        if ready.entries:
            disk.append(ready.entries)
        if ready.hard_state is not None:
            disk.save_hard_state(ready.hard_state)
        send = sim.world.send
        for msg in ready.messages:
            send(self.id, msg.dst, msg)
        now = sim.world.now_us
        if ready.snapshot is not None:
            sim.snapshots_installed += 1
            self.app = HashChain.decode(ready.snapshot.data)
            index = ready.snapshot.meta.index
            sim.observe(Restored(at_us=now, node=self.id, index=index, digest=self.app.digest))
            sim.hooks.on_restored(self.id, index)
        app = self.app
        for entry in ready.committed:
            digest = app.apply(entry)
            sim.observe(Applied(at_us=now, node=self.id, entry=entry, digest=digest))
            sim.hooks.on_applied(self.id, entry)
        for read in ready.read_states:
            self._served(read)
        if ready.committed:
            sim.max_applied = max(sim.max_applied, app.index)
            sim.world.record("applied", self.id, app.index, app.digest)

    def _served(self, read: ReadState) -> None:
        self.sim.reads_served += 1
        now = self.sim.world.now_us
        self.sim.observe(
            ReadServed(at_us=now, node=self.id, context=read.context, index=read.index)
        )

    def is_up(self) -> bool:
        return self.node is not None

    def leading_term(self) -> int | None:
        node = self.node
        return node.term if node is not None and node.role is Role.LEADER else None

    def node_log(self) -> NodeLog:
        if self.node is not None:
            return NodeLog(
                node=self.id,
                snapshot_index=self.node.snapshot_meta.index,
                entries=self.node.log_entries(),
            )
        return NodeLog(
            node=self.id, snapshot_index=self.disk.offset, entries=tuple(self.disk.entries)
        )


class RaftSim(Sim[RaftHost, Message]):
    """The cluster: world, hosts, checkers, and the glue between them."""

    def __init__(
        self, *, rng: random.Random, config: HarnessConfig, suite: CheckerSuite | None = None
    ) -> None:
        super().__init__(
            rng=rng,
            clock=config.clock,
            network=config.network,
            suite=suite or CheckerSuite(),
            trace_key=_trace_key,
        )
        self.config = config
        self.hooks = AppHooks()
        self.elections = 0
        self.max_applied = 0
        self.snapshots_installed = 0
        self.reads_served = 0
        ids = [f"n{i}" for i in range(1, config.nodes + 1)]
        voters = frozenset(ids)
        for node_id in ids:
            raft = RaftConfig(
                node_id=node_id,
                voters=voters,
                election_tick=config.election_tick,
                heartbeat_tick=config.heartbeat_tick,
                max_drift=config.clock.max_drift,
                snapshot_threshold=config.snapshot_threshold,
                snapshot_chunk_bytes=config.snapshot_chunk_bytes,
                max_entries_per_msg=config.max_entries_per_msg,
                max_inflight=config.max_inflight,
            ).validate()
            self.hosts[node_id] = RaftHost(self, node_id, raft)
        self._lease_cache: dict[str, tuple[int, bool] | None] = {}
        """Per node: (term, holds a lease) while it is leader, else None."""

    # -- per-event checks --------------------------------------------------------------

    def after_step(self, host: RaftHost) -> None:
        node = host.node
        assert node is not None
        if node.role is Role.LEADER and node.term > host.leader_term:
            host.leader_term = node.term
            self.elections += 1
            self.world.record("leader", host.id, node.term)
            self.observe(
                LeaderElected(
                    at_us=self.world.now_us,
                    node=host.id,
                    term=node.term,
                    snapshot_index=node.snapshot_meta.index,
                    log=node.log_entries(),
                )
            )
        self.sample_leases(host)

    def sample_leases(self, host: RaftHost) -> None:
        """Feed the lease checker whenever the set of lease holders or of leaders changes.

        A node's role, term and ``lease_remaining`` depend only on its own state, which
        changes only when it handles an event — so re-reading just ``host`` after each of
        its events, against a cache of the others, sees every instant at which the set
        changes. A paused node acts on nothing (it catches up its ticks before it does),
        so it is left out of the sample."""
        node = host.node
        state: tuple[int, bool] | None = None
        if node is not None and node.role is Role.LEADER:
            state = (node.term, node.lease_remaining() > 0)
        if self._lease_cache.get(host.id) == state:
            return
        self._lease_cache[host.id] = state
        holders: list[LeaseHolder] = []
        leaders: list[tuple[str, int]] = []
        for node_id, cached in sorted(self._lease_cache.items()):
            if cached is None or self.world.is_paused(node_id):
                continue
            term, has_lease = cached
            leaders.append((node_id, term))
            if has_lease:
                leader = self.hosts[node_id].node
                assert leader is not None
                holders.append(
                    LeaseHolder(node=node_id, term=term, remaining=leader.lease_remaining())
                )
        self.observe(
            LeaseSample(at_us=self.world.now_us, holders=tuple(holders), leaders=tuple(leaders))
        )

    def sample_logs(self) -> None:
        logs = tuple(host.node_log() for host in self.hosts.values())
        self.observe(LogSample(at_us=self.world.now_us, logs=logs))

    # -- queries (omniscient: for the runner and the client model) ---------------------

    def live(self) -> list[RaftHost]:
        """Hosts that are up (possibly paused)."""
        return [h for h in self.hosts.values() if h.node is not None]
