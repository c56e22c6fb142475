"""Deterministic simulation of quorum-registry clusters (design §2).

A discrete-event ``World`` (true time in integer microseconds, drifting node clocks, a
lossy partitionable network, crashes and restarts) hosts an application — the Raft
harness, or the registry cluster harness (Replicas with model worker runtimes) — while a
``Nemesis`` injects faults and checkers judge the history. One seed reproduces one run
exactly: ``registry sim raft --seed S``, ``registry sim cluster --seed S``.
"""

from __future__ import annotations

from registry.sim.checks import Checker
from registry.sim.cluster.harness import ClusterConfig, ClusterSim
from registry.sim.cluster.runner import ClusterSeedResult, run_cluster_seed, run_cluster_seeds
from registry.sim.engine.clock import ClockConfig, NodeClock
from registry.sim.engine.nemesis import Nemesis
from registry.sim.engine.network import Network, NetworkConfig
from registry.sim.engine.world import Process, World
from registry.sim.raft.checkers import CheckerSuite, default_checkers
from registry.sim.raft.runner import SeedResult, Summary, run_raft_seed, run_raft_seeds, summarize

__all__ = [
    "Checker",
    "CheckerSuite",
    "ClockConfig",
    "ClusterConfig",
    "ClusterSeedResult",
    "ClusterSim",
    "Nemesis",
    "Network",
    "NetworkConfig",
    "NodeClock",
    "Process",
    "SeedResult",
    "Summary",
    "World",
    "default_checkers",
    "run_cluster_seed",
    "run_cluster_seeds",
    "run_raft_seed",
    "run_raft_seeds",
    "summarize",
]
