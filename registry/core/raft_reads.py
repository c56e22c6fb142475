"""ReadIndex and the leader lease (rules 4 and 8 in ``registry.core.raft``).

A read is queued with the heartbeat sequence a quorum must ack; it is released once the
quorum's acked sequence reaches it. The lease is measured from when the heartbeat a
quorum acked was *sent*.
"""

from __future__ import annotations

from registry.core.messages import (
    MessageType,
    NodeId,
    ReadState,
    Role,
)
from registry.core.raft_state import _PendingRead, _RaftState


class _RaftReads(_RaftState):
    # -- reads and lease ---------------------------------------------------------------

    def lease_remaining(self) -> int:
        """Ticks during which no other node can become leader; 0 when not a leader or
        when a quorum has not acked a recent enough heartbeat (rule 4)."""
        if self._role is not Role.LEADER or self._lease_revoked:
            return 0
        if self.id not in self._conf.voters:
            return 0
        acked = self._quorum_value(
            lambda node: self._heartbeat_seq if node == self.id else self._prs[node].acked_heartbeat
        )
        sent = self._heartbeat_sent_tick.get(acked)
        if sent is None:
            return 0
        return max(0, sent + self.cfg.lease_ticks() - self._ticks)

    def _leader_read(self, origin: NodeId, context: int) -> None:
        if self._log.term(self._log.committed) != self._term:
            self._reads_awaiting_commit.append((origin, context))
            return
        read = _PendingRead(
            heartbeat=self._heartbeat_seq + 1,
            index=self._log.committed,
            origin=origin,
            context=context,
        )
        if self._conf.voters == {self.id}:
            self._deliver_read(read)
            return
        self._reads.append(read)
        self._read_broadcast_due = True

    def _release_reads(self) -> None:
        if not self._reads:
            return
        acked = self._quorum_value(
            lambda node: self._heartbeat_seq if node == self.id else self._prs[node].acked_heartbeat
        )
        while self._reads and self._reads[0].heartbeat <= acked:
            self._deliver_read(self._reads.pop(0))

    def _deliver_read(self, read: _PendingRead) -> None:
        if read.origin == self.id:
            self._read_states.append(ReadState(index=read.index, context=read.context))
        else:
            self._send(
                MessageType.READ_INDEX_RESP, read.origin, index=read.index, context=read.context
            )
