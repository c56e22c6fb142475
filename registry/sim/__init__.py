"""Deterministic simulation of quorum-registry clusters (design §2).

A discrete-event ``World`` (true time in integer microseconds, drifting node clocks, a
lossy partitionable network, crashes and restarts) hosts an application — today the
Raft harness — while a ``Nemesis`` injects faults and checkers judge the history. One seed
reproduces one run exactly: ``registry sim raft --seed S``.
"""

from __future__ import annotations

from registry.sim.checkers import Checker, CheckerSuite, default_checkers
from registry.sim.clock import ClockConfig, NodeClock
from registry.sim.nemesis import Nemesis
from registry.sim.network import Network, NetworkConfig
from registry.sim.runner import SeedResult, Summary, run_raft_seed, run_raft_seeds, summarize
from registry.sim.world import Process, World

__all__ = [
    "Checker",
    "CheckerSuite",
    "ClockConfig",
    "Nemesis",
    "Network",
    "NetworkConfig",
    "NodeClock",
    "Process",
    "SeedResult",
    "Summary",
    "World",
    "default_checkers",
    "run_raft_seed",
    "run_raft_seeds",
    "summarize",
]
