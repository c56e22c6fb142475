"""Snapshot transfer: the leader sends a snapshot in chunks, one at a time, resent after
two heartbeat intervals without an answer; the follower assembles the chunks in order,
asks for a restart from what it holds when a chunk does not fit, and restores the
snapshot once the last chunk arrives (unless it already holds that prefix).
"""

from __future__ import annotations

from registry.core.messages import (
    Message,
    MessageType,
    NodeId,
    Snapshot,
)
from registry.core.progress import Progress, ProgressState
from registry.core.raft_state import _RaftState


class _RaftSnapshots(_RaftState):
    # -- snapshot transfer -------------------------------------------------------------

    def _send_snapshot_chunk(self, node: NodeId, pr: Progress) -> None:
        snapshot = pr.snapshot
        if snapshot is None:
            return
        start = pr.snapshot_offset
        chunk = snapshot.data[start : start + self.cfg.snapshot_chunk_bytes]
        pr.snapshot_sent_tick = self._ticks
        self._send(
            MessageType.SNAPSHOT,
            node,
            snapshot=snapshot.meta,
            chunk=chunk,
            offset=start,
            done=start + len(chunk) >= len(snapshot.data),
        )

    def _maybe_resend_snapshot_chunk(self, node: NodeId, pr: Progress) -> None:
        if self._ticks - pr.snapshot_sent_tick >= 2 * self.cfg.heartbeat_tick:
            self._send_snapshot_chunk(node, pr)

    def _handle_snapshot_response(self, msg: Message, pr: Progress) -> None:
        if pr.state is not ProgressState.SNAPSHOT or pr.snapshot is None:
            return
        pr.snapshot_offset = 0 if msg.reject else msg.offset
        if pr.snapshot_offset < len(pr.snapshot.data):
            self._send_snapshot_chunk(msg.src, pr)

    def _handle_snapshot_chunk(self, msg: Message) -> None:
        meta = msg.snapshot
        if meta is None:
            return
        incoming = self._incoming_snapshot
        if msg.offset == 0:
            incoming = self._incoming_snapshot = (meta, bytearray())
        if incoming is None or incoming[0] != meta or msg.offset != len(incoming[1]):
            # A chunk we cannot place: ask for the transfer again from where we are.
            have = len(incoming[1]) if incoming and incoming[0] == meta else 0
            self._send(MessageType.SNAPSHOT_RESP, msg.src, offset=have, reject=have == 0)
            return
        incoming[1].extend(msg.chunk)
        if not msg.done:
            self._send(MessageType.SNAPSHOT_RESP, msg.src, offset=len(incoming[1]))
            return
        self._incoming_snapshot = None
        snapshot = Snapshot(meta=meta, data=bytes(incoming[1]))
        if self._restore(snapshot):
            self._send(MessageType.APPEND_RESP, msg.src, index=self._log.last_index)
        else:
            self._send(MessageType.APPEND_RESP, msg.src, index=self._log.committed)

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.meta
        if meta.index <= self._log.committed:
            return False
        if self._log.match_term(meta.index, meta.term):
            # We already hold that prefix: just learn it is committed.
            self._log.commit_to(meta.index)
            return False
        self._log.restore(snapshot)
        self._refresh_conf()
        return True
