"""Durable worker state kept by the replicated registry: checkpoints.

Rules
-----
1. A checkpoint is a ``Checkpoint(name, token, seq, state)`` command in the Raft log, so
   it is on a majority of fsync'd logs before anyone hears it was taken, and every
   replica holds the same checkpoints (snapshots carry them).
2. It is fenced by the activation's token (G2): it is applied only while ``token`` is
   the name's current token and the name has a holder. Any other token is refused as
   stale (``Code.STALE``, reason ``STALE_TOKEN``) and changes nothing, so a checkpoint
   from a superseded activation can never overwrite its successor's state.
3. Within one token, ``seq`` orders an activation's checkpoints: a retried or reordered
   older one (lower or equal ``seq``) is acknowledged and changes nothing.
4. A name keeps only its last checkpoint. Unregistering the name drops it.
5. A FAILOVER or RESTART activation (no handed-off state) starts with the last
   checkpoint, and learns the log index it was taken at (``restored_from``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCheckpoint:
    """The last checkpoint of one name."""

    index: int
    """The log index of the entry that took it (``ctx.restored_from``)."""
    token: int
    """The token of the activation that took it."""
    seq: int
    """Its order among that activation's checkpoints (rule 3)."""
    state: bytes


class Checkpoints:
    """Name → last checkpoint (pure state; ``RegistryState`` owns one)."""

    def __init__(self) -> None:
        self._by_name: dict[str, StoredCheckpoint] = {}
        self.applied_total = 0
        """Checkpoints applied since this replica started (a metric, not replicated)."""

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> StoredCheckpoint | None:
        return self._by_name.get(name)

    def put(self, index: int, name: str, token: int, seq: int, state: bytes) -> bool:
        """Keep a checkpoint the state machine accepted (rule 2 is checked by the
        caller); False when an equal or newer one of that token is already kept."""
        current = self._by_name.get(name)
        if current is not None and current.token == token and current.seq >= seq:
            return False
        self._by_name[name] = StoredCheckpoint(index=index, token=token, seq=seq, state=state)
        self.applied_total += 1
        return True

    def drop(self, name: str) -> None:
        self._by_name.pop(name, None)

    def to_rows(self) -> list[list[Any]]:
        """For the snapshot: ``[name, index, token, seq, base64 state]``, sorted."""
        return [
            [name, c.index, c.token, c.seq, base64.b64encode(c.state).decode()]
            for name, c in sorted(self._by_name.items())
        ]

    @classmethod
    def from_rows(cls, rows: list[list[Any]]) -> Checkpoints:
        store = cls()
        for name, index, token, seq, state in rows:
            store._by_name[name] = StoredCheckpoint(
                index=index, token=token, seq=seq, state=base64.b64decode(state)
            )
        return store
