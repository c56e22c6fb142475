"""The shell simulator: the production ``Driver`` under virtual time (``registry sim shell``).

Modules: ``vloop`` (deterministic asyncio loop with virtual time), ``disk`` (a ``Storage``
with simulated fsync), ``network`` (the Driver's ``send`` into a lossy, delaying,
partitionable network), ``cluster`` (N Drivers with their real Replicas, simulated
worker hosts, observations for the checkers), ``workload``, ``runner`` (one seed, many
seeds), ``plants`` (test-only Ready loops with a planted bug).
"""
