"""The narrow interfaces the node's parts receive instead of the whole ``Node``.

Rules:

1. ``Node`` (``registry.node.server``) builds the parts and hands each only the
   Protocols below (or a concrete pure helper such as ``Directory``); no part imports
   ``registry.node.server`` (tests/unit/test_import_boundary.py checks it).
2. ``Replicated`` is the driver as the rest of the node may use it: read the core
   through ``view`` (a ``ReplicaView``), change it only through proposals and typed
   controls. ``Driver`` implements it.
3. Each Protocol names just what its users call, so a test can hand a part a small real
   object instead of faking a node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from registry.core.commands import Command
from registry.core.controls import Control
from registry.core.state import Result
from registry.core.view import ReplicaView
from registry.v1 import registry_pb2

R = TypeVar("R")


class Replicated(Protocol):
    """Proposals, reads and controls through this node's core (``Driver``)."""

    @property
    def view(self) -> ReplicaView: ...
    @property
    def incarnation(self) -> int: ...
    async def propose(self, command: Command) -> tuple[int, Result]: ...
    async def read_index(self) -> int: ...
    async def wait_applied(self, index: int, timeout: float) -> None: ...
    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool: ...
    async def request(self, control: Control[R]) -> R: ...
    def submit(self, control: Control[object]) -> None: ...
    def lease_holds(self) -> bool: ...
    def lease_remaining_s(self) -> float: ...


class Reachability(Protocol):
    """Which peers this node heard from lately (``PeerTransport``)."""

    def reachable(self, peers: list[str], within: float) -> list[str]: ...
    def http_address_of(self, peer: str) -> str: ...


class ClusterHealth(Protocol):
    """What this node can tell about the cluster (``StatusReport``)."""

    def no_quorum_message(self) -> str: ...
    def cluster_status(self) -> registry_pb2.ClusterStatus: ...


class WorkerCalls(Protocol):
    """Calls and casts into the activations running here (``HostSupervisor``)."""

    async def call(self, name: str, payload: bytes, timeout: float) -> bytes: ...
    async def cast(self, name: str, payload: bytes) -> None: ...
    def token_of(self, name: str) -> int | None: ...
    def expects(self, name: str) -> bool:
        """Whether this node was told to run ``name`` (starting or running)."""
        ...

    def call_address(self, name: str) -> str:
        """The port of the host running ``name`` here, for direct calls ("" if none)."""
        ...


class WorkerStatus(Protocol):
    """What runs here, for status pages and metrics (``HostSupervisor``)."""

    def running(self) -> dict[str, int]: ...
    def hosts(self) -> list[dict[str, int]]: ...


class DiskStatus(Protocol):
    """The data directory's free-space alarm (``DiskAlarm``)."""

    @property
    def active(self) -> bool: ...
    @property
    def free_bytes(self) -> int: ...
    def refuse_writes(self) -> None: ...
    def alarms(self) -> list[dict[str, object]]: ...
