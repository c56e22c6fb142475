"""The calm phase: stop the chaos, then demand liveness within a bound.

Safety alone is easy to satisfy (a cluster that does nothing is safe). After the nemesis
phase the network heals, every node restarts, loss returns to normal and clients stop
writing. From then on a leader must emerge and a fresh *probe* write must be applied on
every member of its configuration, with all members converged to the same applied index
and digest, within ``bound_us``. A probe lost to a leader change is re-proposed.
"""

from __future__ import annotations

from registry.core.messages import Role
from registry.sim.checks.phases import GoalReached
from registry.sim.engine.nemesis import Nemesis
from registry.sim.harness import CalmPhase
from registry.sim.raft.harness import RaftHost, RaftSim
from registry.sim.raft.observations import FinalState, NodeFinal
from registry.sim.raft.workload import RaftWorkload

POLL_US = 20_000
PROBE_RETRY_US = 2_000_000


class LivenessPhase(CalmPhase[RaftSim, RaftWorkload]):
    poll_us = POLL_US

    def __init__(
        self, sim: RaftSim, workload: RaftWorkload, nemesis: Nemesis, *, bound_us: int, tag: str
    ) -> None:
        super().__init__(sim, workload, nemesis, bound_us=bound_us)
        self._tag = tag
        self.shown = False
        self._probes = 0
        self._probe: tuple[str, bytes, int] | None = None
        """The probe in flight: (node it was proposed at, data, proposal time)."""
        self._acked: dict[bytes, int] = {}
        workload.on_ack = self._on_ack

    def _on_ack(self, data: bytes, index: int) -> None:
        if data.startswith(b"probe"):
            self._acked[data] = index

    def poll(self) -> None:
        if self.shown:
            return
        leader = self._sim.leader()
        if leader is None or leader.node is None:
            return
        if not self._acked:
            self._maybe_probe(leader)
            return
        index = max(self._acked.values())
        members = self.members(leader)
        states = {(h.app.index, h.app.digest) for h in members}
        if len(states) == 1 and all(h.app.index >= index for h in members):
            self.shown = True
            world = self._sim.world
            self._sim.observe(GoalReached(at_us=world.now_us, node=leader.id))
            world.stop()

    def _maybe_probe(self, leader: RaftHost) -> None:
        now = self._sim.world.now_us
        probe = self._probe
        if probe is not None:
            node, _, at = probe
            host = self._sim.hosts[node]
            alive = host.node is not None and host.node.role is Role.LEADER
            if alive and now - at < PROBE_RETRY_US:
                return
        self._probes += 1
        data = f"probe{self._tag}-{self._probes}".encode()
        if self._workload.propose(leader, data) is not None:
            self._probe = (leader.id, data, now)

    def members(self, leader: RaftHost | None) -> list[RaftHost]:
        """Live hosts in the leader's configuration (every live host without a leader)."""
        live = self._sim.live()
        if leader is None or leader.node is None:
            return live
        conf = leader.node.conf.members()
        return [h for h in live if h.id in conf]

    def final_state(self) -> FinalState:
        members = self.members(self._sim.leader())
        return FinalState(
            at_us=self._sim.world.now_us,
            nodes=tuple(
                NodeFinal(node=h.id, applied_index=h.app.index, digest=h.app.digest)
                for h in members
            ),
        )

    def describe(self) -> str:
        """The cluster in one line, for a liveness failure."""
        parts = []
        for host in self._sim.hosts.values():
            node = host.node
            if node is None:
                parts.append(f"{host.id}:down")
                continue
            parts.append(
                f"{host.id}:{node.role.value}/term {node.term}/commit {node.commit_index}/"
                f"applied {node.applied_index}/leader {node.leader or '-'}"
            )
        return "; ".join(parts)
