"""Deterministic simulation of quorum-registry clusters (design §2).

A discrete-event ``World`` (true time in integer microseconds, drifting node clocks, a
lossy partitionable network, crashes and restarts) hosts an application while a
``Nemesis`` injects faults and checkers judge the history. One seed reproduces one run
exactly: ``registry sim raft --seed S``, ``registry sim cluster --seed S``.

Layout (one layer may import only those above it)::

    engine/     world, network, clock, nemesis, disk: knows nothing of Raft or names
    checks/     the one Checker base, Suite, judge(observations, checkers), and the
                bounded calm/heal phase (shared observations and checker)
    runner.py   the one seed runner: SeedOutcome (+ replay command), child_rngs,
                drive (nemesis phase, calm phase, escaped exceptions), run_seeds, Totals
    harness.py  what both harnesses share: active hosts, the leader, the client's pick,
                the calm phase's start
    raft/       the Raft core alone (RawNode): harness, workload, calm phase,
                observations, checkers (election safety … liveness), runner
    cluster/    registry nodes (Replica) with model worker runtimes: harness, runtime,
                workload, heal phase, observations, checkers (G1–G5), runner
    faults.py   planted shell bugs for the cluster harness (tests prove checkers fail)

A checker sees only observations (a list of events), never a harness, so any source of
observations can be judged by the family's checkers (``judge``).
"""

from __future__ import annotations

from registry.sim.checks import Checker, Suite, judge
from registry.sim.cluster.runner import ClusterSeedResult, run_cluster_seed
from registry.sim.engine import ClockConfig, Nemesis, Network, NetworkConfig, NodeClock, World
from registry.sim.engine.world import Process
from registry.sim.raft.runner import SeedResult, Summary, run_raft_seed, summarize
from registry.sim.runner import SeedOutcome, run_seeds

__all__ = [
    "Checker",
    "ClockConfig",
    "ClusterSeedResult",
    "Nemesis",
    "Network",
    "NetworkConfig",
    "NodeClock",
    "Process",
    "SeedOutcome",
    "SeedResult",
    "Suite",
    "Summary",
    "World",
    "judge",
    "run_cluster_seed",
    "run_raft_seed",
    "run_seeds",
    "summarize",
]
