"""One seed of the shell simulator, and many: chaos, then heal, then the checkers' verdict.

A seed runs three phases on a fresh ``VirtualLoop``:

1. **chaos** (``chaos_s``): clients write; the nemesis crashes nodes (some right after
   they sent a vote grant or an append acknowledgement: ``crash_after_send``), restarts
   them, isolates nodes and heals; the network drops and delays messages.
2. **heal** (up to ``heal_s``): links heal, every node restarts, clients stop, then one
   probe write is acknowledged and every node applies up to it.
3. **verdict**: final state and registry to the checkers; the result lists every
   violation (and every fail-stop of a Driver) and the trace hash.

Every random choice comes from ``random.Random`` streams seeded from the seed, and the
loop's time is virtual, so a seed replays exactly: same seed, same ``trace_hash``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from registry.core.commands import NameSpec, Register
from registry.core.messages import Message, MessageType
from registry.core.replica import PeerMessage
from registry.core.timing import Timing
from registry.node.driver import DriverInput
from registry.node.ready_loop import ReadyLoop
from registry.sim.cluster.observations import FinalRegistry, NodeRegistry
from registry.sim.raft.observations import FinalState, NodeFinal
from registry.sim.shell.cluster import KIND, ShellCluster
from registry.sim.shell.network import SimNetwork
from registry.sim.shell.vloop import VirtualLoop
from registry.sim.shell.workload import Workload

__all__ = ["SeedResult", "ShellConfig", "run_seed", "run_seeds"]

_ACKS = (MessageType.VOTE_RESP, MessageType.APPEND_RESP)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShellConfig:
    nodes: int = 3
    chaos_s: float = 2.0
    """Virtual seconds of writes and faults. Default 2 (200 seeds: about 15 s of CPU)."""
    heal_s: float = 8.0
    """Bound on the heal phase (virtual seconds). Default 8."""
    clients: int = 2
    names: int = 6
    drop: float = 0.02
    delay_s: tuple[float, float] = (0.0005, 0.006)
    fsync_s: tuple[float, float] = (0.0002, 0.004)
    """Simulated fsync latency (the executor delay of ``persist``)."""
    fault_every_s: tuple[float, float] = (0.25, 0.8)
    snapshot_entries: int = 32
    """Small, so that compaction and snapshot installs happen within a seed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult:
    seed: int
    violations: tuple[str, ...]
    trace_hash: str
    events: int
    acked: int
    uncertain: int
    crashes: int
    virtual_s: float


class _Nemesis:
    def __init__(self, cluster: ShellCluster, rng: random.Random, cfg: ShellConfig) -> None:
        self.cluster = cluster
        self.rng = rng
        self.cfg = cfg
        self.active = True
        self.armed: str | None = None
        """Crash this node right after it next sends a vote grant or an append ack."""
        self.crashes = 0
        cluster.net.after_send = self._after_send

    async def run(self) -> None:
        cluster, rng = self.cluster, self.rng
        ids = sorted(cluster.nodes)
        while True:
            await asyncio.sleep(rng.uniform(*self.cfg.fault_every_s))
            if not self.active:
                return
            roll = rng.random()
            live = [n.id for n in cluster.live()]
            if roll < 0.3 and live:
                self._crash(rng.choice(live), rng.uniform(0.05, 0.6))
            elif roll < 0.55:
                self.armed = rng.choice(ids)
                cluster.record("arm", self.armed)
            elif roll < 0.8:
                victim = rng.choice(ids)
                cluster.record("isolate", victim)
                cluster.net.isolate(victim, ids)
            else:
                cluster.record("heal")
                cluster.net.heal()

    def _after_send(self, src: str, msg: PeerMessage) -> None:
        if not self.active or src != self.armed or not isinstance(msg, Message):
            return
        if msg.type in _ACKS and not msg.reject:
            self.armed = None
            self._crash(src, self.rng.uniform(0.01, 0.3))

    def _crash(self, node: str, down_s: float) -> None:
        self.crashes += 1
        self.cluster.crash(node)
        self.cluster.loop.call_later(down_s, self._restart, node)

    def _restart(self, node: str) -> None:
        if self.active and self.cluster.nodes[node].driver is None:
            self.cluster.start(node)


async def _scenario(cluster: ShellCluster, cfg: ShellConfig, seed: int) -> SeedResult:
    rngs = random.Random(seed ^ 0x5EED)
    nemesis = _Nemesis(cluster, random.Random(rngs.random()), cfg)
    workload = Workload(cluster, random.Random(rngs.random()), names=cfg.names)
    for node_id in sorted(cluster.nodes):
        cluster.start(node_id)
    clients = [asyncio.ensure_future(workload.client((0.02, 0.12))) for _ in range(cfg.clients)]
    chaos = asyncio.ensure_future(nemesis.run())
    await asyncio.sleep(cfg.chaos_s)
    nemesis.active = False
    nemesis.armed = None
    workload.writing = False
    await chaos
    cluster.net.heal()
    cluster.record("heal-phase")
    for node_id in sorted(cluster.nodes):
        if cluster.nodes[node_id].driver is None:
            cluster.start(node_id)
    await asyncio.gather(*clients)
    healed = await _converge(cluster, workload, cfg.heal_s)
    _verdict(cluster, healed)
    for node in cluster.live():
        assert node.driver is not None
        await node.driver.stop()
    raft_violations = cluster.raft_checks.violations()
    cluster_violations = cluster.cluster_checks.violations()
    return SeedResult(
        seed=seed,
        violations=(*cluster.fail_stops, *raft_violations, *cluster_violations),
        trace_hash=cluster.trace_hash(),
        events=cluster.events,
        acked=workload.acked,
        uncertain=workload.uncertain,
        crashes=nemesis.crashes,
        virtual_s=cluster.loop.time(),
    )


async def _converge(cluster: ShellCluster, workload: Workload, bound_s: float) -> str:
    """A probe write acknowledged, then every node applied up to the leader: "" on
    success, else why not (a liveness failure, reported as a violation)."""
    deadline = cluster.loop.time() + bound_s
    probe = Register(specs=(NameSpec(name="probe", kind=KIND),))
    acked = False
    while not acked and cluster.loop.time() < deadline:
        acked = await workload.op("register", "probe", probe)
    if not acked:
        return "no probe write was acknowledged"
    while cluster.loop.time() < deadline:
        applied = {n.id: n.driver.replica.raft.applied_index for n in cluster.live() if n.driver}
        if len(cluster.live()) == len(cluster.nodes) and len(set(applied.values())) == 1:
            return ""
        await asyncio.sleep(0.05)
    return "nodes did not converge on one applied index"


def _verdict(cluster: ShellCluster, healed: str) -> None:
    now = cluster.now_us()
    if healed:
        cluster.fail_stops.append(f"t={now / 1e6:.6f}s - [heal] {healed}")
    finals, registries = [], []
    for node in cluster.live():
        assert node.driver is not None
        replica = node.driver.replica
        finals.append(
            NodeFinal(node=node.id, applied_index=replica.raft.applied_index, digest=node.digest)
        )
        names = tuple(n for n, r in sorted(replica.state.names.items()) if not r.unregistering)
        registries.append(NodeRegistry(node=node.id, registered=names))
        cluster.record("final", node.id, replica.raft.applied_index, node.digest.hex()[:8])
    cluster.end_all("run-ended")
    cluster.observe(FinalState(at_us=now, nodes=tuple(finals)))
    cluster.observe(FinalRegistry(at_us=now, nodes=tuple(registries)))


def run_seed(
    seed: int,
    cfg: ShellConfig | None = None,
    *,
    plant: type[ReadyLoop[DriverInput]] = ReadyLoop,
) -> SeedResult:
    """Run one seed to its verdict (``plant``: a test-only Ready loop with a bug)."""
    cfg = cfg or ShellConfig()
    streams = random.Random(seed)
    fsync_rng = random.Random(streams.random())
    loop = VirtualLoop(executor_delay=lambda: fsync_rng.uniform(*cfg.fsync_s))
    errors: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(str(ctx.get("message"))))
    network = SimNetwork(loop, random.Random(streams.random()), drop=cfg.drop, delay_s=cfg.delay_s)
    cluster = ShellCluster(
        loop,
        nodes=cfg.nodes,
        rng=random.Random(streams.random()),
        network=network,
        timing=Timing(),
        snapshot_entries=cfg.snapshot_entries,
        ready_loop=plant,
    )
    try:
        return loop.run_until_complete(_scenario(cluster, cfg, seed))
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def run_seeds(
    seeds: Iterable[int],
    cfg: ShellConfig | None = None,
    *,
    plant: type[ReadyLoop[DriverInput]] = ReadyLoop,
) -> tuple[list[SeedResult], float]:
    """Every seed's result and the wall time they took (seconds)."""
    started = time.perf_counter()
    results = [run_seed(seed, cfg, plant=plant) for seed in seeds]
    return results, time.perf_counter() - started
