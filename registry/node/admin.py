"""The operator API (``registry.v1.Admin``): runtime membership changes and snapshots.

Rules:

1. Every method is listed in ``ADMIN_METHODS``; client auth gates exactly these behind
   the ``admin`` permission. Writes run on the leader; a follower forwards them once.
2. ``MemberAdd`` never adds a voter: it commits ``MemberAdmit`` (where to reach the new
   node, so any leader can replicate to it) and then adds a *learner*. ``MemberPromote``
   makes a learner a voter only once its log has caught up with the leader's commit
   index (etcd's learner flow): a voter that cannot vote yet would only make the
   majority harder to reach.
3. ``MemberRemove`` refuses to remove the last voter, and — without ``force`` — a voter
   whose removal leaves fewer reachable voters than a majority of those left. It then
   commits ``MemberRetire`` (the id is retired for good: the peer guard refuses it once it
   is out of the configuration), waits for the member's names to move (by handoff while
   it is up, by failover once the leader declares it down — the lease rules decide, not
   this module), then removes it from the Raft configuration. A leader asked to remove
   itself first hands leadership to a reachable voter and forwards the request there.
4. One configuration change at a time (the core refuses a second one meanwhile, and
   this answers ``UNAVAILABLE``: retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from registry.core.commands import Command, MemberAdmit, MemberRetire
from registry.core.controls import Control, ProposeConfChange, TransferLeadership
from registry.core.errors import NotLeader
from registry.core.messages import ConfChange, ConfChangeType, Role
from registry.core.state import validate_identifier
from registry.core.view import ReplicaView
from registry.node.config import NodeConfig, derive_peer_address
from registry.node.directory import Directory
from registry.node.seams import ClusterHealth, Reachability, Replicated
from registry.node.service import WRITE_TIMEOUT_S, _rpc
from registry.node.status import CODE_TO_STATUS, Abort, relayed
from registry.node.transport import CHANNEL_OPTIONS
from registry.v1 import admin_pb2 as apb
from registry.v1 import admin_pb2_grpc

log = logging.getLogger("registry.admin")
T = TypeVar("T")


NOT_CAUGHT_UP = "NOT_CAUGHT_UP"
QUORUM_AT_RISK = "QUORUM_AT_RISK"
LAST_VOTER = "LAST_VOTER"
RETIRED = "RETIRED"


def _refuse(code: grpc.StatusCode, reason: str, message: str) -> Abort:
    return Abort(code, message, reason=reason)


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        cfg: NodeConfig,
        replicated: Replicated,
        directory: Directory,
        *,
        health: ClusterHealth,
        reach: Reachability,
        cluster_id: str,
    ) -> None:
        self._cfg = cfg
        self.replicated = replicated
        self.directory = directory
        self.health = health
        self._reach = reach
        self.cluster_id = cluster_id
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def node_id(self) -> str:
        return self._cfg.id

    @property
    def _view(self) -> ReplicaView:
        return self.replicated.view

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # -- plumbing ----------------------------------------------------------------------

    async def _on_core(self, control: Control[T]) -> T:
        """Hand ``control`` to the core loop (between Readies); its result or error."""
        return await asyncio.wait_for(self.replicated.request(control), WRITE_TIMEOUT_S)

    async def _propose(self, command: Command) -> int:
        index, result = await asyncio.wait_for(self.replicated.propose(command), WRITE_TIMEOUT_S)
        if not result.ok:
            raise Abort(CODE_TO_STATUS[result.code], result.message)
        return index

    async def _change(self, kind: ConfChangeType, node: str) -> int:
        """Propose a configuration change and wait until it is committed and applied."""
        change = ConfChange(type=kind, node=node)
        proposed = await self._on_core(ProposeConfChange(change=change))
        term, index = proposed.term, proposed.index
        await self.replicated.wait_applied(index, WRITE_TIMEOUT_S)
        if self._view.term_at(index) != term:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "leadership changed meanwhile; retry")
        return index

    async def _leader_or_forward(
        self, call: Callable[[admin_pb2_grpc.AdminStub], Awaitable[T]]
    ) -> T | None:
        """``None`` when this node leads; otherwise the leader's answer."""
        raft = self._view
        if raft.role is Role.LEADER:
            return None
        leader = raft.leader
        address = self.directory.address_of(leader) if leader else None
        if address is None:
            raise Abort(grpc.StatusCode.UNAVAILABLE, self.health.no_quorum_message())
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS
            )
        try:
            return await call(admin_pb2_grpc.AdminStub(channel))
        except grpc.aio.AioRpcError as exc:
            raise relayed(exc, leader=(leader, address)) from None

    # -- membership --------------------------------------------------------------------

    @_rpc
    async def MemberAdd(self, request: apb.MemberAddRequest, context: Any) -> apb.MemberAddResponse:
        node = request.id
        problem = validate_identifier("node id", node)
        peer = request.peer_address or derive_peer_address(request.address)
        if problem or not _host_port(request.address) or not _host_port(peer):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                problem
                or f"address and peer address must be host:port (got "
                f"{request.address!r}, {peer!r})",
            )
        view = self._view
        state, conf = view.state, view.conf
        if node in state.retired:
            raise _refuse(
                grpc.StatusCode.FAILED_PRECONDITION,
                RETIRED,
                f"{node} was removed from this cluster; its id is retired: add the "
                "replacement under a new id",
            )
        if node in conf.members():
            role = "voter" if node in conf.voters else "learner"
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"{node} is already a {role}")
        forwarded: apb.MemberAddResponse | None = await self._leader_or_forward(
            lambda stub: stub.MemberAdd(request)
        )
        if forwarded is not None:
            return forwarded
        await self._propose(MemberAdmit(node=node, address=request.address, peer_address=peer))
        index = await self._change(ConfChangeType.ADD_LEARNER, node)
        log.info("member %s added as a learner (%s, peer %s)", node, request.address, peer)
        return apb.MemberAddResponse(index=index)

    @_rpc
    async def MemberPromote(
        self, request: apb.MemberPromoteRequest, context: Any
    ) -> apb.MemberPromoteResponse:
        node = request.id
        forwarded: apb.MemberPromoteResponse | None = await self._leader_or_forward(
            lambda stub: stub.MemberPromote(request)
        )
        if forwarded is not None:
            return forwarded
        raft = self._view
        if node in raft.conf.voters:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"{node} is already a voter")
        if node not in raft.conf.learners:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{node} is not a learner")
        match = raft.progress_match(node) or 0
        if match < raft.commit_index:
            raise _refuse(
                grpc.StatusCode.FAILED_PRECONDITION,
                NOT_CAUGHT_UP,
                f"{node} has replicated up to index {match} of the leader's "
                f"{raft.commit_index}: not caught up yet, retry shortly",
            )
        index = await self._change(ConfChangeType.ADD_VOTER, node)
        log.info("learner %s promoted to voter", node)
        return apb.MemberPromoteResponse(index=index)

    @_rpc
    async def MemberRemove(
        self, request: apb.MemberRemoveRequest, context: Any
    ) -> apb.MemberRemoveResponse:
        node = request.id
        forwarded: apb.MemberRemoveResponse | None = await self._leader_or_forward(
            lambda stub: stub.MemberRemove(request)
        )
        if forwarded is not None:
            return forwarded
        raft = self._view
        state = raft.state
        if node not in raft.conf.members():
            if node in state.retired:
                return apb.MemberRemoveResponse()  # removed already
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{node} is not a member")
        if node in raft.conf.voters:
            self._check_quorum_after(node, force=request.force)
        if node == raft.id:
            return await self._hand_over_and_forward(request)
        moved = state.held_count(node)
        if node not in state.retired:
            await self._propose(MemberRetire(node=node))
        timing = self._cfg.timing
        wait_s = timing.handoff_deadline + timing.effective_down_after() + 2 * timing.lease
        emptied = await self.replicated.wait_for(
            lambda: self._view.state.held_count(node) == 0, wait_s
        )
        record = self._view.state.members.get(node)
        handed_off = emptied and (record is None or record.up)
        index = await self._change(ConfChangeType.REMOVE, node)
        log.info(
            "member %s removed; %d name(s) moved by %s",
            node,
            moved,
            "handoff" if handed_off else "failover",
        )
        return apb.MemberRemoveResponse(index=index, names_moved=moved, handed_off=handed_off)

    def _check_quorum_after(self, node: str, *, force: bool) -> None:
        remaining = sorted(self._view.conf.voters - {node})
        if not remaining:
            raise _refuse(
                grpc.StatusCode.FAILED_PRECONDITION,
                LAST_VOTER,
                f"cannot remove {node}: it is the last voter",
            )
        within = 2 * self._cfg.timing.election_timeout
        live = self._reach.reachable(remaining, within)
        need = len(remaining) // 2 + 1
        if len(live) < need and not force:
            raise _refuse(
                grpc.StatusCode.FAILED_PRECONDITION,
                QUORUM_AT_RISK,
                f"removing {node} leaves voters {', '.join(remaining)}, of which "
                f"{len(live)} ({', '.join(live) or 'none'}) are reachable; a majority needs "
                f"{need}: bring the others back first, or force it",
            )

    async def _hand_over_and_forward(
        self, request: apb.MemberRemoveRequest
    ) -> apb.MemberRemoveResponse:
        """The leader removes itself: hand leadership to a reachable voter, then ask it."""
        me = self._cfg.id
        others = [n for n in sorted(self._view.conf.voters) if n != me]
        within = 2 * self._cfg.timing.election_timeout
        live = self._reach.reachable(others, within)
        if not live:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "no reachable voter to hand leadership to")
        target = live[0]
        await self._on_core(TransferLeadership(target=target))
        deadline = 4 * self._cfg.timing.election_timeout
        await self.replicated.wait_for(lambda: self._view.leader not in ("", me), deadline)
        forwarded: apb.MemberRemoveResponse | None = await self._leader_or_forward(
            lambda stub: stub.MemberRemove(request)
        )
        if forwarded is None:
            raise NotLeader(self._view.leader)
        return forwarded

    @_rpc
    async def MemberList(
        self, request: apb.MemberListRequest, context: Any
    ) -> apb.MemberListResponse:
        raft = self._view
        state = raft.state
        conf = raft.conf
        members = []
        for node in sorted(conf.members() | state.members.keys() | state.retired):
            record = state.members.get(node)
            progress = raft.progress_match(node)
            if node in conf.voters:
                role = "voter"
            elif node in conf.learners:
                role = "learner"
            elif node in state.retired:
                role = "retired"
            else:
                role = "member"
            members.append(
                apb.MemberInfo(
                    id=node,
                    role=role,
                    address=self.directory.address_of(node) or "",
                    peer_address=self.directory.peer_address_of(node) or "",
                    up=bool(record and record.up),
                    match=raft.last_index if node == raft.id else (progress or 0),
                    activations=state.held_count(node),
                )
            )
        return apb.MemberListResponse(
            leader=raft.leader, commit_index=raft.commit_index, members=members
        )

    # -- snapshots ---------------------------------------------------------------------

    async def SnapshotSave(
        self, request: apb.SnapshotSaveRequest, context: Any
    ) -> AsyncIterator[apb.SnapshotChunk]:
        """A consistent snapshot from the leader (``registry.node.backup``)."""
        from registry.node.backup import stream_snapshot

        try:
            async for chunk in stream_snapshot(self, context):
                yield chunk
        except Abort as exc:
            refusal = exc.refusal
            await context.abort(refusal.code, refusal.message, refusal.trailers(self._cfg.id))
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        except (NotLeader, TimeoutError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"no snapshot: {exc or 'timed out'}")
