"""Worker hosts: the processes that run a node's activations, and their supervision.

A node is a *control process* (Raft, leases, placement, storage, gRPC, HTTP) that runs
no user code, plus ``workers`` *host* processes (``registry.node.hosts.main``) that load
the worker modules and run ``WorkerRuntime``. ``HostSupervisor`` (in the control process)
spawns them, feeds them effects, calls and casts over a socket pair, renews their
sub-leases and kills any host that outlives its lease (see ``supervisor``). Each host
also serves ``Call`` and ``Cast`` on a port of its own, so clients that know it skip the
control process (``calls``; ``NodeConfig.call_ports``).
"""

from registry.node.hosts.supervisor import CallPort, HostSupervisor, call_port, host_index

__all__ = ["CallPort", "HostSupervisor", "call_port", "host_index"]
