"""Worker hosts: the processes that run a node's activations, and their supervision.

A node is a *control process* (Raft, leases, placement, storage, gRPC, HTTP) that runs
no user code, plus ``workers`` *host* processes (``registry.node.hosts.main``) that load
the worker modules and run ``WorkerRuntime``. ``HostSupervisor`` (in the control process)
spawns them, feeds them effects, calls and casts over a socket pair, renews their
sub-leases and kills any host that outlives its lease (see ``supervisor``).
"""

from registry.node.hosts.supervisor import HostSupervisor, host_index

__all__ = ["HostSupervisor", "host_index"]
