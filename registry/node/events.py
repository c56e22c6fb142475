"""Recent events on this node, for the status page: a bounded ring buffer.

``EventLog.on_ready`` runs after every Ready the driver processes, beside the metrics
hook. It must stay cheap there: it looks at the Ready's effects (O(effects)), compares
the Raft leader and term with the last ones seen (O(1)), and diffs the member view only
when the view's epoch changed (O(members), rare). It never walks the names.

Timestamps are wall-clock (``time.time``): the page shows them to people, who think in
clock time; nothing orders or times anything by them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from registry.core.replica import BeginHandoff, ReplicaReady, Start, Stop, StopReason
from registry.core.view import ReplicaView

DEFAULT_CAPACITY = 200
"""Events kept; the oldest is dropped first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    seq: int
    """1, 2, 3, … in the order recorded on this node (survives the ring dropping old ones)."""
    time: float
    """Wall-clock seconds since the epoch."""
    kind: str
    """``start``, ``stop``, ``handoff``, ``fence``, ``leader`` or ``member``."""
    name: str = ""
    """The registered name (start/stop/handoff) or member id (member); else empty."""
    token: int = 0
    """The activation's fencing token (start/stop/handoff); else 0."""
    detail: str = ""


_MemberState = tuple[bool, int, bool]
"""(up, incarnation, draining) of one member, as the view has it."""


class EventLog:
    def __init__(
        self,
        view: Callable[[], ReplicaView],
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity})")
        self._replica_view = view
        self._clock = clock
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._leader: tuple[str, int] | None = None
        self._epoch = -1
        self._members: dict[str, _MemberState] = {}

    def record(self, kind: str, *, name: str = "", token: int = 0, detail: str = "") -> None:
        self._seq += 1
        self._events.append(
            Event(
                seq=self._seq, time=self._clock(), kind=kind, name=name, token=token, detail=detail
            )
        )

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events (default all kept), newest first, as JSON values."""
        events = list(self._events)[::-1]
        return [asdict(e) for e in events[:limit]]

    # -- the per-Ready hook ------------------------------------------------------------

    def on_ready(self, ready: ReplicaReady) -> None:
        self._effects(ready)
        view = self._replica_view()
        self._leadership(view)
        epoch = view.state.epoch
        if epoch != self._epoch:
            self._epoch = epoch
            self._membership(view)

    def _effects(self, ready: ReplicaReady) -> None:
        effects = ready.effects
        fenced = sum(
            1 for e in effects if isinstance(e, Stop) and e.reason is StopReason.QUORUM_LOST
        )
        keep = self._events.maxlen or len(effects)
        if len(effects) > keep:
            # A fence or a rebalance is thousands of effects in one Ready; all but the
            # last ``keep`` would fall out of the log at once. Their sequence numbers
            # are still taken, so a reader sees the gap.
            self._seq += len(effects) - keep
            effects = effects[-keep:]
        for effect in effects:
            if isinstance(effect, Start):
                a = effect.activation
                self.record(
                    "start",
                    name=a.name,
                    token=a.token,
                    detail=f"started ({a.reason.value}), kind {a.kind}",
                )
            elif isinstance(effect, BeginHandoff):
                self.record(
                    "handoff",
                    name=effect.name,
                    token=effect.token,
                    detail="begin_handoff: moving to its new owner",
                )
            elif isinstance(effect, Stop):
                self.record(
                    "stop",
                    name=effect.name,
                    token=effect.token,
                    detail=f"stopped ({effect.reason.value})",
                )
        # The same test as the fences metric: a lost lease stops workers, and a fence
        # with workers running takes a new incarnation.
        if fenced or ready.incarnation is not None:
            parts = ["lease lost"]
            if fenced:
                parts.append(f"stopped {fenced} worker{'s' if fenced != 1 else ''}")
            if ready.incarnation is not None:
                parts.append(f"new incarnation {ready.incarnation}")
            self.record("fence", detail=", ".join(parts))

    def _leadership(self, raft: ReplicaView) -> None:
        seen = (raft.leader, raft.term)
        if seen == self._leader:
            return
        self._leader = seen
        leader, term = seen
        role = raft.role.value
        if leader:
            detail = f"leader {leader}, term {term} (this node: {role})"
        else:
            detail = f"no leader, term {term} (this node: {role})"
        self.record("leader", name=leader, detail=detail)

    def _membership(self, view: ReplicaView) -> None:
        now = {node: (m.up, m.incarnation, m.draining) for node, m in view.state.members.items()}
        before = self._members
        self._members = now
        for node in sorted(now):
            up, incarnation, draining = now[node]
            old = before.get(node)
            if old is None or old[0] != up or (up and old[1] != incarnation):
                state = "up" if up else "down"
                self.record("member", name=node, detail=f"{state}, incarnation {incarnation}")
            if up and draining and (old is None or not old[2]):
                self.record("member", name=node, detail="draining (graceful stop)")
        for node in sorted(before.keys() - now.keys()):  # after a snapshot install, say
            self.record("member", name=node, detail="removed from the view")
