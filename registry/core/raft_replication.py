"""The leader's replication: flow control per follower (``registry.core.progress``), the
commit rule (Figure 8, rule 5 in ``registry.core.raft``), broadcasts of appends and
heartbeats; and the follower's side of an APPEND.
"""

from __future__ import annotations

from registry.core.log import RaftInvariantError
from registry.core.messages import (
    NONE,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    Role,
)
from registry.core.progress import Progress, ProgressState
from registry.core.raft_reads import _RaftReads
from registry.core.raft_snapshots import _RaftSnapshots


class _RaftReplication(_RaftSnapshots, _RaftReads):
    # -- leader: replication and progress ----------------------------------------------

    def _step_leader(self, msg: Message) -> None:
        pr = self._prs.get(msg.src)
        if msg.type is MessageType.READ_INDEX:
            self._leader_read(msg.src, msg.context)
            return
        if pr is None:
            return
        pr.recent_active = True
        if msg.type is MessageType.APPEND_RESP:
            self._handle_append_response(msg, pr)
        elif msg.type is MessageType.HEARTBEAT_RESP:
            self._handle_heartbeat_response(msg, pr)
        elif msg.type is MessageType.SNAPSHOT_RESP:
            self._handle_snapshot_response(msg, pr)

    def _handle_append_response(self, msg: Message, pr: Progress) -> None:
        if msg.reject:
            hint = msg.reject_hint
            if msg.log_term > 0:
                hint = self._log.find_conflict_by_term(msg.reject_hint, msg.log_term)
            if pr.maybe_decrease(msg.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(msg.src)
            return
        was_paused = self._paused(pr)
        if not pr.maybe_update(msg.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.snapshot is None or pr.match >= pr.snapshot.meta.index:
                pr.become_probe()
        else:
            pr.free_inflight(msg.index)
        if self._maybe_commit():
            if self._role is not Role.LEADER:
                return
            self._append_broadcast_due = True
        elif was_paused:
            self._send_append(msg.src)
        while self._send_append(msg.src, allow_empty=False):
            pass
        if msg.src == self._transferee and pr.match == self._log.last_index:
            self._send_timeout_now(msg.src)

    def _handle_heartbeat_response(self, msg: Message, pr: Progress) -> None:
        pr.probe_sent = False
        pr.acked_heartbeat = max(pr.acked_heartbeat, msg.context)
        if pr.state is ProgressState.REPLICATE and self._paused(pr):
            # APPENDs were lost and their acks will never come: free one slot so the next
            # APPEND goes out; the follower rejects the gap and we fall back to probing.
            pr.free_oldest()
        if pr.state is ProgressState.SNAPSHOT:
            self._maybe_resend_snapshot_chunk(msg.src, pr)
        elif pr.match < self._log.last_index:
            self._send_append(msg.src)
        self._release_reads()

    def _maybe_commit(self) -> bool:
        index = self._quorum_value(lambda node: self._prs[node].match)
        # Figure 8: only entries of the current term are committed by counting replicas.
        if self._log.term(index) != self._term or not self._log.commit_to(index):
            return False
        if self._reads_awaiting_commit:
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for origin, context in waiting:
                self._leader_read(origin, context)
        if self.id not in self._conf.voters and self._log.committed >= self._last_conf_index:
            successor = self._caught_up_voter()
            self._become_follower(self._term, NONE)  # rule 6: we removed ourselves
            if successor:
                # Rule 6: the voters need not wait out an election timeout.
                self._send_timeout_now(successor)
        return True

    def _caught_up_voter(self) -> NodeId:
        """A voter that holds our whole log (the most recently heard first), or none."""
        last = self._log.last_index
        ready = [n for n in self._conf.voters if n != self.id and self._prs[n].match == last]
        return max(ready, key=lambda n: (self._prs[n].acked_heartbeat, n), default=NONE)

    def _append_entry(self, kind: EntryType, data: bytes) -> int:
        index = self._log.last_index + 1
        self._log.append([Entry(term=self._term, index=index, type=kind, data=data)])
        if kind is EntryType.CONF_CHANGE:
            self._refresh_conf()
        # The leader's own copy counts toward the commit only once persisted (``advance``).
        self._append_broadcast_due = True
        return index

    def _broadcast_append(self) -> None:
        for node in self._peers():
            self._send_append(node)

    def _broadcast_heartbeat(self) -> None:
        self._heartbeat_seq += 1
        seq = self._heartbeat_seq
        self._heartbeat_sent_tick[seq] = self._ticks
        horizon = self._ticks - 2 * self.cfg.election_tick
        for old in [s for s, t in self._heartbeat_sent_tick.items() if t < horizon]:
            del self._heartbeat_sent_tick[old]
        for node in self._peers():
            pr = self._prs[node]
            commit = min(pr.match, self._log.committed)
            self._send(MessageType.HEARTBEAT, node, commit=commit, context=seq)
            if pr.state is ProgressState.SNAPSHOT:
                self._maybe_resend_snapshot_chunk(node, pr)

    def _paused(self, pr: Progress) -> bool:
        return pr.is_paused(self.cfg.max_inflight, self.cfg.max_inflight_bytes)

    def _send_append(self, node: NodeId, *, allow_empty: bool = True) -> bool:
        pr = self._prs[node]
        if self._paused(pr):
            return False
        log = self._log
        if pr.next > log.last_index + 1:
            raise RaftInvariantError(f"{node}: next {pr.next} beyond last {log.last_index}")
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            pr.become_snapshot(log.snapshot, self._ticks)
            self._send_snapshot_chunk(node, pr)
            return False
        entries = _within_bytes(
            log.slice(pr.next, min(log.last_index + 1, pr.next + self.cfg.max_entries_per_msg)),
            self.cfg.max_bytes_per_msg,
        )
        if not entries and not allow_empty:
            return False
        self._send(
            MessageType.APPEND,
            node,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=log.committed,
        )
        if entries:
            pr.sent_entries(entries[-1].index, sum(len(e.data) for e in entries))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    # -- follower: appends -------------------------------------------------------------

    def _handle_append(self, msg: Message) -> None:
        log = self._log
        if msg.index < log.committed:
            self._send(MessageType.APPEND_RESP, msg.src, index=log.committed)
            return
        before = log.last_index
        last_new = log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        if last_new is None:
            hint = log.find_conflict_by_term(min(msg.index, log.last_index), msg.log_term)
            self._send(
                MessageType.APPEND_RESP,
                msg.src,
                index=msg.index,
                reject=True,
                reject_hint=hint,
                log_term=log.term(hint) or 0,
            )
            return
        if any(e.type is EntryType.CONF_CHANGE for e in msg.entries) or (
            log.last_index < before or self._last_conf_index > msg.index
        ):
            self._refresh_conf()
        self._send(MessageType.APPEND_RESP, msg.src, index=last_new)


def _within_bytes(entries: list[Entry], limit: int) -> list[Entry]:
    """The longest prefix of ``entries`` whose data fits in ``limit`` bytes, but at least
    one entry (an entry larger than the limit travels alone)."""
    total = 0
    for count, entry in enumerate(entries):
        total += len(entry.data)
        if total > limit and count > 0:
            return entries[:count]
    return entries
