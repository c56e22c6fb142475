"""The simulation engine: what every simulated application runs on.

``World`` (true time in integer µs, one event heap, crashes, restarts, pauses),
``NodeClock``/``ClockConfig`` (drifting tick clocks), ``Network``/``NetworkConfig``
(loss, delay, duplication, partitions), ``Nemesis`` (the fault schedule) and ``RaftDisk``
(a node's stable storage, checked against the Ready contract). None of it knows Raft
roles or registry names; applications plug in as ``Process`` objects.
"""

from __future__ import annotations

from registry.sim.engine.clock import ClockConfig, NodeClock
from registry.sim.engine.disk import IllegalWrite, RaftDisk
from registry.sim.engine.nemesis import Nemesis
from registry.sim.engine.network import Network, NetworkConfig, NetworkStats
from registry.sim.engine.world import Process, World

__all__ = [
    "ClockConfig",
    "IllegalWrite",
    "Nemesis",
    "Network",
    "NetworkConfig",
    "NetworkStats",
    "NodeClock",
    "Process",
    "RaftDisk",
    "World",
]
