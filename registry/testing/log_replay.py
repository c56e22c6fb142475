"""Read a node's committed log back and replay it through the state machine, to judge
what was *applied* — not what a worker was told.

A worker's ``ctx.checkpoint`` answer comes from its node's applied state, so it cannot
show whether the state machine kept a checkpoint it should have refused. This helper
copies a node's data directory (the live node keeps its own, locked), loads the copy with
the node's own ``FileStorage``, restores the snapshot and applies every committed entry
with ``RegistryState.apply`` (the code the nodes run), and reports each ``Checkpoint``
entry with the name's token *before* it was applied and what the state machine kept
after it. Registrations are reported too (a name registered again starts empty).

The observations are the simulator's (``registry.sim.cluster.observations``, with
``at_us`` set to the log index) so that ``registry.sim.cluster.durable_checkers`` judges
them exactly as it judges a simulated run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from registry.core.commands import Checkpoint, Register, decode
from registry.core.messages import EntryType
from registry.core.state import RegistryState
from registry.node.storage import FileStorage
from registry.sim.cluster.observations import CheckpointApplied, RegisterApplied


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedCheckpoint:
    """One committed ``Checkpoint`` entry, replayed."""

    index: int
    name: str
    token: int
    """The token it was taken with."""
    current: int
    """The name's token when it was applied (0: not registered)."""
    count: int
    """``count`` of its state (``ledger-counter`` JSON; 0 otherwise)."""
    accepted: bool
    """The state machine returned OK."""
    kept_token: int
    """The token of the checkpoint the state machine keeps for the name after it (0: none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Replayed:
    checkpoints: tuple[LoggedCheckpoint, ...]
    observations: tuple[CheckpointApplied | RegisterApplied, ...]
    """In log order, for ``durable_checkers.Checkpoints``."""
    first_index: int
    """The first index replayed (after the snapshot)."""
    commit: int


def _count(state: bytes) -> int:
    try:
        return int(json.loads(state).get("count", 0))
    except (ValueError, AttributeError):
        return 0


def replay(data_dir: Path, scratch: Path) -> Replayed:
    """Replay the committed log of the node whose data directory is ``data_dir``
    (copied under ``scratch`` first)."""
    copy = scratch / f"replay-{data_dir.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("LOCK"))
    with FileStorage(copy, fsync=False) as storage:
        loaded = storage.load()
    persisted = loaded.persisted
    snapshot = persisted.snapshot
    state = RegistryState.restore(snapshot.data) if snapshot else RegistryState()
    commit = persisted.hard_state.commit
    checkpoints: list[LoggedCheckpoint] = []
    observations: list[CheckpointApplied | RegisterApplied] = []
    for entry in persisted.entries:
        if entry.index > commit:
            break
        if entry.type is not EntryType.NORMAL or not entry.data:
            continue
        command = decode(entry.data)
        before = state.registered(command.name) if isinstance(command, Checkpoint) else None
        result = state.apply(entry.index, command)
        if isinstance(command, Register) and result.ok:
            names = tuple(spec.name for spec in command.specs)
            observations.append(RegisterApplied(at_us=entry.index, index=entry.index, names=names))
        if not isinstance(command, Checkpoint):
            continue
        kept = state.checkpoint_of(command.name)
        logged = LoggedCheckpoint(
            index=entry.index,
            name=command.name,
            token=command.token,
            current=before.token if before is not None else 0,
            count=_count(command.state),
            accepted=result.ok,
            kept_token=kept.token if kept is not None else 0,
        )
        checkpoints.append(logged)
        observations.append(
            CheckpointApplied(
                at_us=entry.index,
                node=data_dir.name,
                index=entry.index,
                name=command.name,
                token=command.token,
                seq=command.seq,
                count=logged.count,
                accepted=result.ok,
            )
        )
    first = persisted.entries[0].index if persisted.entries else commit + 1
    return Replayed(
        checkpoints=tuple(checkpoints),
        observations=tuple(observations),
        first_index=first,
        commit=commit,
    )
