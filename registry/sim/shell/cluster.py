"""N production ``Driver``s (each with its real ``Replica``) in one process.

Why: the other simulators drive the core through their own copies of the Ready loop; this
one drives the node's own shell (``registry.node.driver.Driver`` and the one
``ReadyLoop``), so catch-up and deaf ticks, the persist → send → apply order and the lease
deadline are what seeds exercise. Rules:

- Everything runs on one ``VirtualLoop``; each Driver gets the loop's virtual clock, a
  ``SimDisk`` and a ``send`` into ``SimNetwork``. Every random choice comes from ``rng``
  streams derived from the seed, so a seed replays exactly (``trace_hash``).
- Worker hosts are simulated inline: a ``Start`` runs at once, a ``Stop`` or
  ``BeginHandoff`` ends the activation at once and is reported back to the Driver.
  A crash ends every activation of the node at the crash instant.
- What the checkers see is built from the Driver's own outputs (the Ready passed to its
  ``effects`` callback, ``propose`` results) and from the simulated disks.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from registry.core.messages import Entry, Role
from registry.core.replica import BeginHandoff, PeerMessage, ReplicaReady, Start, Stop
from registry.core.timing import Timing
from registry.node.config import NodeConfig
from registry.node.driver import Driver, DriverInput
from registry.node.ready_loop import ReadyLoop
from registry.sim.cluster.checkers import ClusterSuite, Fencing, Registrations, SingleActivation
from registry.sim.cluster.observations import ActivationEnded, ActivationStarted
from registry.sim.raft.checkers import (
    CheckerSuite,
    Durability,
    ElectionSafety,
    StateMachineSafety,
)
from registry.sim.raft.hashchain import GENESIS
from registry.sim.raft.observations import Applied, LeaderElected, Restored
from registry.sim.shell.disk import SimDisk
from registry.sim.shell.network import SimNetwork
from registry.sim.shell.vloop import VirtualLoop

__all__ = ["KIND", "ShellCluster", "ShellNode"]

KIND = "counter"
"""The one worker kind every simulated node serves."""


@dataclass(slots=True)
class _Running:
    token: int
    reason: str
    start_us: int


@dataclass(slots=True)
class ShellNode:
    id: str
    disk: SimDisk = field(default_factory=SimDisk)
    driver: Driver | None = None
    digest: bytes = GENESIS
    """The hash chain of what this node's state machine applied (for the checkers)."""
    applied_data: dict[int, bytes] = field(default_factory=dict)
    running: dict[str, _Running] = field(default_factory=dict)
    generation: int = 0
    """Bumped at every start and crash: a dead Driver's late callbacks are ignored."""


class ShellCluster:
    def __init__(
        self,
        loop: VirtualLoop,
        *,
        nodes: int,
        rng: random.Random,
        network: SimNetwork,
        timing: Timing,
        snapshot_entries: int,
        ready_loop: type[ReadyLoop[DriverInput]] = ReadyLoop,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.net = network
        self.timing = timing
        self.snapshot_entries = snapshot_entries
        self.ready_loop = ready_loop
        self.nodes = {f"n{i + 1}": ShellNode(f"n{i + 1}") for i in range(nodes)}
        self.peers = {n: f"{n}:7000" for n in self.nodes}
        self.raft_checks = CheckerSuite([ElectionSafety(), StateMachineSafety(), Durability()])
        self.cluster_checks = ClusterSuite([SingleActivation(), Fencing(), Registrations()])
        self.fail_stops: list[str] = []
        self.history: dict[int, bytes] = {0: GENESIS}
        """index → the state digest the first node to apply it computed."""
        self._trace = hashlib.sha256()
        self.events = 0
        network.deliver = self._deliver

    # -- time and trace ----------------------------------------------------------------

    def now_us(self) -> int:
        return round(self.loop.time() * 1e6)

    def record(self, *fields: object) -> None:
        """One line of the run's trace (hashed: equal seeds must give equal hashes)."""
        self.events += 1
        self._trace.update(repr((self.now_us(), *fields)).encode())

    def trace_hash(self) -> str:
        return self._trace.hexdigest()[:16]

    def observe(self, obs: object) -> None:
        self.raft_checks.feed(obs)
        self.cluster_checks.feed(obs)

    # -- lifecycle ---------------------------------------------------------------------

    def live(self) -> list[ShellNode]:
        return [n for n in self.nodes.values() if n.driver is not None]

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.driver is None, f"{node_id} is already running"
        loaded = node.disk.load()
        cfg = NodeConfig(
            id=node_id,
            advertise=self.peers[node_id],
            peers=dict(self.peers),
            timing=self.timing,
            snapshot_entries=self.snapshot_entries,
        )
        snap = loaded.persisted.snapshot
        restored_at = snap.meta.index if snap is not None else 0
        node.digest = self.history.get(restored_at, b"unknown snapshot")
        node.applied_data = {}
        self.observe(
            Restored(at_us=self.now_us(), node=node_id, index=restored_at, digest=node.digest)
        )
        node.generation += 1
        gen = node.generation

        def send(msgs: list[PeerMessage]) -> None:
            if node.generation == gen:
                self.net.send(node_id, msgs)

        def effects(ready: ReplicaReady) -> None:
            if node.generation == gen:
                self._on_ready(node, ready)

        def fatal(code: int, reason: str) -> None:
            if node.generation == gen:
                self._fatal(node, code, reason)

        node.driver = Driver(
            cfg,
            node.disk,
            loaded,
            kinds=(KIND,),
            send=send,
            effects=effects,
            rng=random.Random(self.rng.random()),
            fatal=fatal,
            clock=self.loop.time,
            ready_loop=self.ready_loop,
        )
        node.driver.start()
        self.record("start", node_id, node.driver.incarnation)

    def crash(self, node_id: str) -> None:
        """The process dies now: its tasks stop, unsynced writes are lost, its workers end."""
        node = self.nodes[node_id]
        driver, node.driver = node.driver, None
        if driver is None:
            return
        node.generation += 1
        self.record("crash", node_id)
        for name in sorted(node.running):
            self._end(node, name, "crash")
        self.loop.create_task(driver.stop())

    # -- the Driver's outputs ----------------------------------------------------------

    def _fatal(self, node: ShellNode, code: int, reason: str) -> None:
        self.fail_stops.append(f"t={self.now_us() / 1e6:.6f}s {node.id} [fail-stop] {reason}")
        self.record("fatal", node.id, code)
        node.driver = None
        node.generation += 1
        for name in sorted(node.running):
            self._end(node, name, "crash")

    def _on_ready(self, node: ShellNode, ready: ReplicaReady) -> None:
        driver = node.driver
        if driver is None:
            return
        now = self.now_us()
        raft = ready.raft
        if raft.snapshot is not None:
            index = raft.snapshot.meta.index
            node.digest = self.history.get(index, b"unknown snapshot")
            self.observe(Restored(at_us=now, node=node.id, index=index, digest=node.digest))
        for entry in raft.committed:
            self._applied(node, entry, now)
        soft = raft.soft_state
        if soft is not None and soft.role is Role.LEADER:
            term = driver.replica.raft.term
            self.record("leader", node.id, term)
            self.observe(
                LeaderElected(at_us=now, node=node.id, term=term, snapshot_index=0, log=())
            )
        for effect in ready.effects:
            self._effect(node, driver, effect, now)

    def _applied(self, node: ShellNode, entry: Entry, now: int) -> None:
        node.digest = hashlib.sha256(
            node.digest + struct.pack(">QQ", entry.index, entry.term) + entry.data
        ).digest()
        self.history.setdefault(entry.index, node.digest)
        node.applied_data[entry.index] = entry.data
        self.observe(Applied(at_us=now, node=node.id, entry=entry, digest=node.digest))

    def _effect(self, node: ShellNode, driver: Driver, effect: object, now: int) -> None:
        if isinstance(effect, Start):
            act = effect.activation
            self.record("start-worker", node.id, act.name, act.token)
            node.running[act.name] = _Running(act.token, act.reason.value, now)
            self.observe(
                ActivationStarted(
                    at_us=now,
                    node=node.id,
                    name=act.name,
                    token=act.token,
                    reason=act.reason.value,
                    initial=0,
                )
            )
        elif isinstance(effect, Stop):
            if self._runs(node, effect.name, effect.token):
                self._end(node, effect.name, effect.reason.value)
            driver.stopped(effect.name, effect.token)
        elif isinstance(effect, BeginHandoff):
            if self._runs(node, effect.name, effect.token):
                self._end(node, effect.name, "handoff")
            driver.handoff_done(effect.name, effect.token, None)

    @staticmethod
    def _runs(node: ShellNode, name: str, token: int) -> bool:
        running = node.running.get(name)
        return running is not None and running.token == token

    def _end(self, node: ShellNode, name: str, why: str) -> None:
        running = node.running.pop(name)
        self.record("end-worker", node.id, name, running.token, why)
        self.observe(
            ActivationEnded(
                at_us=self.now_us(),
                node=node.id,
                name=name,
                token=running.token,
                reason=running.reason,
                why=why,
                start_us=running.start_us,
                final=0,
            )
        )

    def end_all(self, why: str) -> None:
        for node in self.nodes.values():
            for name in sorted(node.running):
                self._end(node, name, why)

    # -- network -----------------------------------------------------------------------

    def _deliver(self, msg: PeerMessage) -> None:
        driver = self.nodes[msg.dst].driver
        if driver is not None:
            driver.deliver(msg)

    # -- queries -----------------------------------------------------------------------

    def leader(self) -> ShellNode | None:
        for node in self.live():
            assert node.driver is not None
            if node.driver.replica.raft.role is Role.LEADER:
                return node
        return None
