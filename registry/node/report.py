"""What this node tells about itself and the cluster: the ``Cluster`` RPC, ``/status``,
``/status/names``, readiness, and why it cannot serve a write.

Everything is read from the local replica through a ``ReplicaView`` (``Replicated.view``)
and from the parts that run here; nothing here changes state. Other members' leases are
known only on the leader (rule in ``_member_leases``).
"""

from __future__ import annotations

from collections.abc import Callable

from registry.core.messages import Role
from registry.node.config import NodeConfig
from registry.node.directory import Directory
from registry.node.events import EventLog
from registry.node.seams import DiskStatus, Reachability, Replicated, WorkerStatus
from registry.node.status_page import NamesQuery, names_page
from registry.v1 import registry_pb2

STATUS_EVENTS = 50
"""Recent events included in ``/status`` (``/status/events`` has all that are kept)."""


class StatusReport:
    def __init__(
        self,
        cfg: NodeConfig,
        replicated: Replicated,
        directory: Directory,
        *,
        reach: Reachability,
        runtime: WorkerStatus,
        events: EventLog,
        disk: DiskStatus,
    ) -> None:
        self._cfg = cfg
        self._replicated = replicated
        self._directory = directory
        self._reach = reach
        self._runtime = runtime
        self._events = events
        self._disk = disk

    def no_quorum_message(self) -> str:
        """Why this node cannot serve a write or a current read: it sees no quorum, or
        it does (peers heard lately, the dead leader possibly among them) and a leader
        is being elected or has not yet granted it a lease."""
        view = self._replicated.view
        voters = sorted(view.conf.voters)
        within = 2 * self._cfg.timing.election_timeout
        seen = self._reach.reachable(voters, within)
        if len(seen) <= len(voters) // 2:
            return f"no quorum: {len(seen)} of {len(voters)} voters reachable ({', '.join(seen)})"
        if not view.leader:
            return f"no leader yet: election in progress (term {view.term})"
        return f"no lease yet from leader {view.leader} (term {view.term})"

    def ready(self) -> tuple[bool, str]:
        if self._replicated.lease_holds():
            return True, "ready: holding a member lease"
        return False, "not ready: " + self.no_quorum_message()

    def cluster_status(self) -> registry_pb2.ClusterStatus:
        raft = self._replicated.view
        state = raft.state
        counts = {node: state.held_count(node) for node in state.members}
        members = [
            registry_pb2.MemberStatus(
                id=m.node,
                address=m.address,
                roles=sorted(m.roles),
                up=m.up,
                voter=m.node in raft.conf.voters,
                incarnation=m.incarnation,
                activations=counts.get(m.node, 0),
            )
            for _, m in sorted(state.members.items())
        ]
        leader = raft.leader
        return registry_pb2.ClusterStatus(
            node=self._cfg.id,
            leader=leader,
            leader_address=(self._directory.address_of(leader) or "") if leader else "",
            term=raft.term,
            quorum=self._replicated.lease_holds(),
            commit_index=raft.commit_index,
            applied_index=raft.applied_index,
            members=members,
            names=state.live_count(),
            lease_remaining_s=self._replicated.lease_remaining_s(),
        )

    def status(self) -> dict[str, object]:
        """The ``/status`` JSON. Keys of earlier versions stay (tests and tools read
        them); ``events`` holds the newest ``STATUS_EVENTS`` events."""
        status = self.cluster_status()
        raft = self._replicated.view
        state = raft.state
        voters = sorted(raft.conf.voters)
        leases = self._member_leases()
        return {
            "node": status.node,
            "role": raft.role.value,
            "incarnation": self._replicated.incarnation,
            "leader": status.leader,
            "leader_address": status.leader_address,
            "term": status.term,
            "quorum": status.quorum,
            "voters": voters,
            "quorum_size": len(voters) // 2 + 1,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "lease_remaining_s": round(status.lease_remaining_s, 3),
            "names": status.names,
            "names_waiting": len(state.waiting()),
            "names_per_node": {m.id: m.activations for m in status.members},
            "activations": sorted(self._runtime.running()),
            "hosts": self._runtime.hosts(),
            "is_leader": raft.role is Role.LEADER,
            "members": [
                {
                    "id": m.id,
                    "address": m.address,
                    "http": self._reach.http_address_of(m.id),
                    "roles": list(m.roles),
                    "up": m.up,
                    "draining": bool((r := state.members.get(m.id)) and r.draining),
                    "voter": m.voter,
                    "raft": _raft_part(m.id, status.leader, m.voter),
                    "incarnation": m.incarnation,
                    "activations": m.activations,
                    "lease": leases.get(m.id, {"state": "unknown", "source": "none"}),
                }
                for m in status.members
            ],
            "events": self._events.recent(STATUS_EVENTS),
            "alarms": self._disk.alarms(),
        }

    def _member_leases(self) -> dict[str, dict[str, object]]:
        """Each member's lease as far as this node knows it: its own exactly; the others'
        only on the leader, from when it last acknowledged their heartbeats (a lease runs
        from the heartbeat's send, so ``lease − age`` is an upper bound); elsewhere
        "unknown" — a follower has no way to tell."""
        view = self._replicated.view
        timing = self._cfg.timing
        leading = view.is_leader
        out: dict[str, dict[str, object]] = {}
        for node, member in view.state.members.items():
            if node == self._cfg.id:
                left = self._replicated.lease_remaining_s()
                out[node] = {
                    "state": "held" if left > 0 else "none",
                    "remaining_s": round(left, 3),
                    "source": "self",
                }
            elif not member.up:
                out[node] = {"state": "down", "source": "view"}
            elif leading:
                age = (view.ticks - view.last_heard(node)) * timing.tick
                left = max(0.0, timing.lease - age)
                out[node] = {
                    "state": "held" if left > 0 else "lapsed",
                    "remaining_s": round(left, 3),
                    "last_ack_s": round(age, 3),
                    "source": "leader",
                }
            else:
                out[node] = {"state": "unknown", "source": "none"}
        return out

    def names(
        self, query: NamesQuery, readable: Callable[[str], bool] = lambda _name: True
    ) -> dict[str, object]:
        """``/status/names``: the registered names matching a search, with their owners
        (only those ``readable`` by the token asking, with auth on)."""
        return names_page(self._replicated.view.state, query, self._directory.address_of, readable)


def _raft_part(node: str, leader: str, voter: bool) -> str:
    if node == leader:
        return "leader"
    return "voter" if voter else "learner"
