"""Leadership transfers on purpose, mixed into the chaos (``registry sim cluster --transfers``).

Why: a leader that hands leadership over sends its failure detector's counts with the
``TIMEOUT_NOW`` (``registry.core.membership`` rule 5, the handover), and its successor
may declare a silent member down sooner than from its own win. That shortcut is only
safe if the counts bound every lease the member holds; the cluster checkers (G1 above
all) judge it under the nemesis's partitions, crashes and pauses, which a transfer on a
quiet network never meets. Off by default, so the seeds' histories stay as they were;
the transfers draw from their own RNG.
"""

from __future__ import annotations

import random

from registry.core.controls import TransferLeadership
from registry.core.errors import NotLeader, ProposalRejected
from registry.sim.cluster.harness import ClusterSim

TRANSFER_CHECK_US = 1_500_000
"""How often a transfer may start (each time with ``TRANSFER_CHANCE``)."""
TRANSFER_CHANCE = 0.5


def schedule_transfers(sim: ClusterSim, rng: random.Random, until_us: int) -> None:
    """Until ``until_us`` of true time, now and then ask the leader to hand leadership to
    a random other voter."""

    def maybe_transfer() -> None:
        if sim.world.now_us >= until_us or rng.random() >= TRANSFER_CHANCE:
            return
        leader = sim.leader()
        if leader is None or leader.replica is None:
            return
        voters = sorted(leader.replica.raft.conf.voters - {leader.id})
        if not voters:
            return
        target = rng.choice(voters)
        try:
            leader.replica.control(TransferLeadership(target=target))
        except (NotLeader, ProposalRejected):
            return  # not leading after all, or a transfer or change already under way
        sim.world.record("transfer", leader.id, target)
        sim.transfers += 1
        leader.settle()

    sim.world.every(TRANSFER_CHECK_US, maybe_transfer)
