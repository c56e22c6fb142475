"""The log line a fence writes: why the member lease ran out (membership rules 2-4).

A fence stops every worker of the node, so "why" is the first thing an operator asks.
The member's own account (``LeaseLapse``) tells the likely causes apart: a loop that
sent no heartbeats, acknowledgements that waited for this node to apply the log, or no
acknowledgements at all (the leader without its Raft lease, or the link down).
"""

from __future__ import annotations

from registry.core.membership import LeaseLapse
from registry.core.timing import Timing


def describe_lapse(lapse: LeaseLapse, timing: Timing, incarnation: int | None) -> str:
    def ago(ticks: int) -> str:
        return "never" if ticks < 0 else f"{ticks * timing.tick:.2f} s ago"

    silent = lapse.last_heartbeat < 0 or lapse.last_heartbeat * timing.tick > 2 * (
        timing.member_heartbeat
    )
    if not lapse.leader:
        cause = "no leader was known: none was elected in time, or this node is cut off"
    elif lapse.acks_held:
        cause = (
            f"{lapse.acks_held} acknowledgement(s) from {lapse.leader} waited for this node "
            f"to apply the log up to index {lapse.held_for_index} (applied "
            f"{lapse.applied}): it applied too slowly"
        )
    elif silent:
        cause = "this node sent no heartbeat for over two intervals: its loop was stalled"
    else:
        cause = (
            f"heartbeats to the leader {lapse.leader} went unacknowledged: it lacked its Raft "
            "lease (a voter slow or unreachable), or the link was down"
        )
    return (
        f"member lease lapsed; fencing every worker here (new incarnation {incarnation}): "
        f"{cause}. The lease came from a heartbeat sent "
        f"{ago(lapse.granted_by_heartbeat_sent)}; last heartbeat sent "
        f"{ago(lapse.last_heartbeat)}, last acknowledgement {ago(lapse.last_ack)}"
    )
