"""Planted shell bugs: test-only Ready loops that break a rule of
``registry.node.ready_loop``.

Why: a simulator that never fails proves nothing. tests/sim_shell shows the checkers
catch each of these. Only ``run_seed(..., plant=...)`` takes them; nothing in
``registry.node`` reads them.

- ``SendBeforePersist`` (rule 1) sends a Ready's messages (votes, append
  acknowledgements) *before* its fsync, as a shell that pipelines carelessly would; a
  crash inside the fsync then forgets a vote or an entry the others already counted.
- ``LeasePastDownAfter`` (rule 11) renews the member lease for three leases from the
  acknowledgement's arrival instead of one from its heartbeat's send, even from an ack
  the agent refused: a lease that outlasts ``down_after``, so the leader fails a cut-off
  member's names over while that member still runs them (G1). Caught only when faults
  last long enough for a failover: 2 s of chaos per seed never caught it in 100 seeds;
  20 s catches it within a few.
"""

from __future__ import annotations

from registry.core.membership import MemberAck
from registry.core.replica import ReplicaReady
from registry.node.driver import DriverInput
from registry.node.ready_loop import ReadyLoop

__all__ = ["PLANTS", "LeasePastDownAfter", "SendBeforePersist"]


class SendBeforePersist(ReadyLoop[DriverInput]):
    async def handle(self, ready: ReplicaReady) -> None:
        self.send(ready)  # the bug: acknowledgements leave before they are durable
        await self.persist(ready)
        self.finish(ready)


class LeasePastDownAfter(ReadyLoop[DriverInput]):
    def renew(self, ack: MemberAck) -> None:
        super().renew(ack)
        agent = self.replica.agent
        # The bug: three leases from now, not one from the send, and whether or not the
        # agent took the ack (one of an older incarnation, from before a fence).
        agent._lease_until = max(agent._lease_until, agent.ticks + 3 * agent.cfg.lease_tick)
        self.update_lease()


PLANTS: dict[str, type[ReadyLoop[DriverInput]]] = {
    "send-before-persist": SendBeforePersist,
    "lease-past-down-after": LeasePastDownAfter,
}
"""Planted bugs by name (``registry sim shell --plant NAME``)."""
