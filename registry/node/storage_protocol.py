"""What the shell needs from stable storage: one ``Storage`` Protocol.

Why a Protocol: the node persists to ``FileStorage`` (``registry.node.storage``) and the
shell simulator (``registry.sim.shell``) to a simulated disk; the Ready loop
(``registry.node.ready_loop``) and the ``Driver`` are written against this interface only,
so the simulator runs the production shell rather than a copy of it.

The contract (both implementations keep it):

- ``persist`` makes one ``ReplicaReady``'s durable part (new incarnation, snapshot,
  entries, hard state, compaction) stable before it returns; it is cheap when there is
  nothing to persist. An ``OSError`` means what reached the disk is unknown: the caller
  must stop (fail-stop), not retry.
- ``load`` returns what a restarting node finds: exactly what earlier ``persist`` calls
  made durable.
"""

from __future__ import annotations

from typing import Protocol

from registry.core.messages import Ready, Snapshot
from registry.node.storage import Loaded

__all__ = ["Storage"]


class Storage(Protocol):
    def persist(
        self, *, incarnation: int | None, ready: Ready, compaction: Snapshot | None
    ) -> None: ...

    def load(self, *, repair: bool = True) -> Loaded: ...
