"""Planted shell bugs: test-only Ready loops that break rule 1 of ``registry.node.ready_loop``.

Why: a simulator that never fails proves nothing. ``SendBeforePersist`` sends a Ready's
messages (votes, append acknowledgements) *before* its fsync, as a shell that pipelines
carelessly would; a crash inside the fsync then forgets a vote or an entry the others
already counted. tests/sim_shell shows the checkers catch it. Only
``run_seed(..., plant=...)`` takes these; nothing in ``registry.node`` reads them.
"""

from __future__ import annotations

from registry.core.replica import ReplicaReady
from registry.node.driver import DriverInput
from registry.node.ready_loop import ReadyLoop

__all__ = ["PLANTS", "SendBeforePersist"]


class SendBeforePersist(ReadyLoop[DriverInput]):
    async def handle(self, ready: ReplicaReady) -> None:
        self.send(ready)  # the bug: acknowledgements leave before they are durable
        await self.persist(ready)
        self.finish(ready)


PLANTS: dict[str, type[ReadyLoop[DriverInput]]] = {"send-before-persist": SendBeforePersist}
"""Planted bugs by name (``registry sim shell --plant NAME``)."""
