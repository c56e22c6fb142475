"""A tiny synchronous network of RawNodes for unit tests.

Unlike the simulator there is no time: ``pump()`` delivers messages until the network is
quiet, ``tick()`` ticks every live node once. Tests cut links, rewrite messages and crash
nodes explicitly, so each classic Raft case reads as a short script.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from registry.core.config import RaftConfig
from registry.core.messages import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    PersistedState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from registry.core.raft import RawNode

Filter = Callable[[Message], Message | None]


@dataclass
class Disk:
    """What a node has persisted: exactly what survives a crash."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def persisted(self) -> PersistedState:
        return PersistedState(
            hard_state=self.hard_state, snapshot=self.snapshot, entries=tuple(self.entries)
        )


class Net:
    def __init__(
        self,
        ids: Iterable[str],
        *,
        seed: int = 1,
        voters: Iterable[str] | None = None,
        logs: dict[str, list[int]] | None = None,
        terms: dict[str, int] | None = None,
        **config: object,
    ) -> None:
        """``logs`` gives a node a pre-existing log as a list of entry terms (Figure 7
        style), ``terms`` its persisted current term."""
        self.ids = list(ids)
        self.voters = frozenset(voters if voters is not None else self.ids)
        self.config = config
        self.rng = random.Random(seed)
        self.disks: dict[str, Disk] = {i: Disk() for i in self.ids}
        for node, entry_terms in (logs or {}).items():
            disk = self.disks[node]
            # A hand-made log needs the membership beside it: an index-0 snapshot holds it.
            disk.snapshot = Snapshot(
                meta=SnapshotMeta(index=0, term=0, conf=ConfState(voters=self.voters)), data=b""
            )
            disk.entries = [Entry(term=t, index=k + 1) for k, t in enumerate(entry_terms)]
            disk.hard_state = HardState(term=max(entry_terms, default=0))
        for node, term in (terms or {}).items():
            disk = self.disks[node]
            disk.hard_state = replace(disk.hard_state, term=term)
        self.nodes: dict[str, RawNode] = {}
        self.applied: dict[str, list[Entry]] = {i: [] for i in self.ids}
        self.app_snapshots: dict[str, Snapshot] = {}
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        self.cut: set[tuple[str, str]] = set()
        self.filters: list[Filter] = []
        self.read_states: dict[str, list[tuple[int, int]]] = {i: [] for i in self.ids}
        for node in self.ids:
            self.start(node)

    # -- lifecycle ---------------------------------------------------------------------

    def cfg(self, node: str) -> RaftConfig:
        voters = self.voters if node in self.voters else frozenset()
        return RaftConfig(node_id=node, voters=voters, **self.config)  # type: ignore[arg-type]

    def start(self, node: str) -> RawNode:
        raft = RawNode(
            self.cfg(node), random.Random(self.rng.random()), self.disks[node].persisted()
        )
        self.nodes[node] = raft
        self._drain(node)
        return raft

    def crash(self, node: str) -> None:
        del self.nodes[node]
        self.queue = [m for m in self.queue if m.dst != node and m.src != node]

    def restart(self, node: str) -> RawNode:
        self.applied[node] = []
        return self.start(node)

    # -- network -----------------------------------------------------------------------

    def isolate(self, node: str) -> None:
        for other in self.ids:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def partition(self, *groups: Iterable[str]) -> None:
        sets = [set(g) for g in groups]
        for a in sets:
            for b in sets:
                if a is not b:
                    self.cut |= {(x, y) for x in a for y in b}

    def heal(self) -> None:
        self.cut.clear()

    def tick(self, times: int = 1, nodes: Iterable[str] | None = None) -> None:
        for _ in range(times):
            for node in list(nodes if nodes is not None else self.nodes):
                if node in self.nodes:
                    self.nodes[node].tick()
                    self._drain(node)
            self.pump()

    def pump(self, limit: int = 100_000) -> None:
        """Collect what direct calls (propose, read_index…) produced, then deliver
        messages until the network is quiet."""
        for node in list(self.nodes):
            self._drain(node)
        for _ in range(limit):
            if not self.queue:
                return
            msg = self.queue.pop(0)
            if (msg.src, msg.dst) in self.cut or msg.dst not in self.nodes:
                continue
            rewritten: Message | None = msg
            for f in self.filters:
                rewritten = f(rewritten) if rewritten is not None else None
            if rewritten is None:
                continue
            self.nodes[msg.dst].step(rewritten)
            self._drain(msg.dst)
        raise AssertionError("network did not go quiet")

    def _drain(self, node: str) -> None:
        raft = self.nodes[node]
        disk = self.disks[node]
        while raft.has_ready():
            rd = raft.ready()
            if rd.snapshot:
                disk.snapshot = rd.snapshot
                disk.entries = []
                self.app_snapshots[node] = rd.snapshot
                self.applied[node] = []
            if rd.entries:
                first = rd.entries[0].index
                disk.entries = [e for e in disk.entries if e.index < first] + list(rd.entries)
            if rd.hard_state:
                disk.hard_state = rd.hard_state
            self.queue.extend(rd.messages)
            self.sent.extend(rd.messages)
            self.applied[node].extend(rd.committed)
            self.read_states[node].extend((r.index, r.context) for r in rd.read_states)
            raft.advance(rd)
            if raft.should_compact():
                snap = raft.compact(raft.applied_index, f"state@{raft.applied_index}".encode() * 40)
                disk.snapshot = snap
                disk.entries = [e for e in disk.entries if e.index > snap.meta.index]

    # -- queries -----------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.role is Role.LEADER]

    def leader(self) -> RawNode:
        found = self.leaders()
        assert len(found) == 1, f"expected one leader, found {found}"
        return self.nodes[found[0]]

    def elect(self, node: str) -> RawNode:
        """Make ``node`` leader: let stickiness windows pass quietly, then campaign."""
        for raft in self.nodes.values():
            raft.forget_leader()  # the stickiness window has passed
        self.nodes[node].campaign()
        self._drain(node)
        self.pump()
        assert self.nodes[node].role is Role.LEADER, f"{node} did not win"
        return self.nodes[node]

    def terms(self) -> dict[str, int]:
        return {n: r.term for n, r in self.nodes.items()}

    def log_terms(self, node: str) -> list[int]:
        disk = self.disks[node]
        return [e.term for e in disk.entries]

    def data_applied(self, node: str) -> list[bytes]:
        return [e.data for e in self.applied[node] if e.data and e.type is EntryType.NORMAL]
