"""The simulated disk under a simulated node: a ``Storage`` (``registry.node.storage_protocol``).

Why it exists: the shell simulator hands this to the production ``Driver`` in place of
``FileStorage``. It keeps what ``persist`` made durable in a ``RaftDisk`` (which refuses
writes that cannot be right: a gap, a term moving back, a changed vote) plus the
incarnation. Rules:

- ``persist`` applies one Ready in the contract's order (incarnation, snapshot, entries,
  hard state, compaction) and is durable when it returns. Its latency is the virtual
  loop's executor delay (``asyncio.to_thread`` → ``VirtualLoop.run_in_executor``): a
  crash during it cancels the write, so an unsynced write is lost and nothing else is.
- ``load`` returns exactly what earlier ``persist`` calls stored; the disk outlives the
  node (a restart builds a new ``Driver`` on the same ``SimDisk``).
"""

from __future__ import annotations

from registry.core.messages import PersistedState, Ready, Snapshot
from registry.node.storage import Loaded
from registry.sim.engine.disk import RaftDisk

__all__ = ["SimDisk"]


class SimDisk:
    def __init__(self) -> None:
        self.raft = RaftDisk()
        self.incarnation = 0
        self.persists = 0

    def persist(
        self, *, incarnation: int | None, ready: Ready, compaction: Snapshot | None
    ) -> None:
        if incarnation is None and compaction is None and not ready.must_sync:
            return
        self.persists += 1
        if incarnation is not None:
            self.incarnation = incarnation
        if ready.snapshot is not None:
            self.raft.install_snapshot(ready.snapshot)
        if ready.entries:
            self.raft.append(ready.entries)
        if ready.hard_state is not None:
            self.raft.save_hard_state(ready.hard_state)
        if compaction is not None:
            self.raft.compact(compaction)

    def load(self, *, repair: bool = True) -> Loaded:
        persisted = self.raft.load() or PersistedState()
        return Loaded(persisted=persisted, incarnation=self.incarnation, repaired=None)
