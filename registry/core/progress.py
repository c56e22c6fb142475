"""What a leader knows about each follower's log, and how fast it may send to it.

A follower's progress is in one of three states (etcd-io/raft's flow control):

=========  ==========================================  ==================================
state      meaning                                     sending
=========  ==========================================  ==================================
PROBE      we do not know where its log matches ours   one APPEND per heartbeat interval
REPLICATE  it matches up to ``match``                  optimistic, up to ``max_inflight``
                                                       APPENDs and ``max_inflight_bytes``
SNAPSHOT   it needs entries we compacted away          snapshot chunks, one at a time
=========  ==========================================  ==================================

Transitions: PROBE → REPLICATE on an accepted APPEND; REPLICATE → PROBE on a rejection;
any → SNAPSHOT when the entries it needs are compacted; SNAPSHOT → PROBE once it reports
a match at or past the snapshot.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from registry.core.messages import Snapshot


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    """In PROBE: an APPEND is out and we wait for its answer (or the next heartbeat)."""
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    """In REPLICATE: the last index and entry bytes of each APPEND not yet acknowledged."""
    inflight_bytes: int = 0
    """The sum of the entry bytes in ``inflight``."""
    recent_active: bool = True
    """Heard from within the current check-quorum window."""
    acked_heartbeat: int = 0
    """Highest heartbeat sequence number this follower acknowledged (lease, ReadIndex)."""
    snapshot: Snapshot | None = None
    """In SNAPSHOT: the snapshot being sent and the next byte to send."""
    snapshot_offset: int = 0
    snapshot_sent_tick: int = 0

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT and self.snapshot is not None:
            self.next = max(self.match + 1, self.snapshot.meta.index + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot: Snapshot, tick: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.snapshot = snapshot
        self.snapshot_offset = 0
        self.snapshot_sent_tick = tick

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.inflight.clear()
        self.inflight_bytes = 0
        self.snapshot = None
        self.snapshot_offset = 0

    def maybe_update(self, index: int) -> bool:
        """An APPEND up to ``index`` was accepted. Returns whether ``match`` moved."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """An APPEND at ``rejected`` was refused; ``hint`` is the highest index that may
        still match. Returns False for a stale rejection (one we already acted on)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last: int, size: int = 0) -> None:
        if self.state is ProgressState.REPLICATE:
            self.next = last + 1
            self.inflight.append((last, size))
            self.inflight_bytes += size
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def free_inflight(self, index: int) -> None:
        while self.inflight and self.inflight[0][0] <= index:
            self.free_oldest()

    def free_oldest(self) -> None:
        _, size = self.inflight.popleft()
        self.inflight_bytes -= size

    def is_paused(self, max_inflight: int, max_inflight_bytes: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight or (
                bool(self.inflight) and self.inflight_bytes >= max_inflight_bytes
            )
        return True
