"""One registry node: storage, core driver, peer transport, client API, workers, HTTP.

This is the *control process*: it runs no user code. Activations run in ``cfg.workers``
worker host processes (``registry.node.hosts``), which it supervises: a host whose worker
does not stop within ``fence_grace`` of a lost lease (or of a stop) is SIGKILLed and
restarted, and the node itself stays up.

Exit codes (documented for supervisors such as systemd or Kubernetes):

- 0: stopped on request (SIGTERM/SIGINT).
- 2: bad configuration (worker modules that do not import included), the data directory
  is in use by another node, or it is damaged (one line names the file and the recovery;
  ``registry doctor`` shows more).
- 70: the core loop failed (a bug or an invariant failure): one log line, no cleanup.
- 74: a write or fsync of the data directory failed (EIO, ENOSPC): memory is ahead of
  the disk and a failed fsync is never retried (``registry.node.fail_stop``).
- A worker host exits 75 when its watchdog finds its sub-lease over with workers running
  (the control process stalled); the control process restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc.aio

from registry.core.messages import Role
from registry.core.replica import Replica, ReplicaReady
from registry.node import cluster_id
from registry.node.admin import AdminService
from registry.node.auth.gate import AuthGate, Tokens, identity
from registry.node.client_tls import ClientTls
from registry.node.config import NodeConfig, derive_peer_address
from registry.node.disk_alarm import DiskAlarm
from registry.node.driver import Driver
from registry.node.events import EventLog
from registry.node.gc_pauses import GcPauses
from registry.node.grpc_services import StandardServices
from registry.node.hosts import HostSupervisor
from registry.node.http import HttpServer, Routes
from registry.node.limits import ConcurrencyLimits
from registry.node.metrics import NodeMetrics
from registry.node.peer_guard import view_of
from registry.node.peer_tls import PeerTls
from registry.node.rpc_metrics import RpcMetrics
from registry.node.service import RegistryService
from registry.node.status import MalformedRequests
from registry.node.status_page import NamesQuery, names_page
from registry.node.storage import FileStorage
from registry.node.storage_check import load_checked
from registry.node.transport import SERVER_OPTIONS, PeerTransport
from registry.node.watch import WatchHub
from registry.tracing import ServerTracing, node_tracer_provider
from registry.v1 import admin_pb2_grpc, registry_pb2, registry_pb2_grpc

log = logging.getLogger("registry.node")
STATUS_EVENTS = 50
"""Recent events included in ``/status`` (``/status/events`` has all that are kept)."""


class Node:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self._server: grpc.aio.Server | None = None
        self._peer_server: grpc.aio.Server | None = None
        self._http: HttpServer | None = None
        self._stopped = asyncio.Event()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        self.storage = FileStorage(cfg.data_dir, fsync=cfg.fsync, segment_bytes=cfg.segment_bytes)
        loaded = load_checked(self.storage)  # a damaged data directory stops us before hosts
        if loaded.repaired:
            log.warning("%s: %s", cfg.data_dir, loaded.repaired)
        self.cluster_id = cluster_id.resolve(cfg.data_dir, cfg.cluster_id, cfg.peers)
        configured = frozenset(cfg.peers)
        self.transport = PeerTransport(
            cfg.id,
            self.peer_address_of,
            self._deliver,
            cluster_id=self.cluster_id,
            tls=PeerTls.load(cfg.peer_ca, cfg.peer_cert, cfg.peer_key) if cfg.peer_tls else None,
            view=lambda: view_of(self.driver.replica, configured),
            refused=lambda reason: self.metrics.peer_refused.labels(reason).inc(),
            binary_entries=lambda: self.driver.control(Replica.use_binary_entries),
        )
        timing = cfg.timing
        self.runtime = HostSupervisor(
            node=cfg.id,
            workers=cfg.workers,
            worker_modules=cfg.worker_modules,
            reports=self,
            lease_deadline=self._lease_deadline,
            fence_grace=timing.fence_grace,
            handoff_deadline=timing.handoff_deadline,
            max_state_bytes=cfg.max_state_bytes,
            log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            mailbox_limit=cfg.mailbox_limit,
            mailbox_bytes=cfg.mailbox_bytes,
        )
        kinds = await self.runtime.start()
        self.driver = Driver(
            cfg,
            self.storage,
            loaded,
            kinds=kinds,
            send=self.transport.send,
            effects=self._on_ready,
        )
        self.driver.replica.state.track_changes = True
        self.metrics = NodeMetrics(self)
        self._gc_pauses = GcPauses(self.metrics.gc_pause_seconds)
        self.events = EventLog(self.driver.replica)
        self.watches = WatchHub(self)
        self.driver.listeners.on_applied.append(self.watches.on_ready)
        self.client_tls = ClientTls.load(cfg)
        tokens = Tokens(Path(cfg.token_file)) if cfg.auth != "off" else None
        self.auth = AuthGate(
            cfg.auth,
            tokens,
            is_peer=lambda cn: cn in cfg.peers or cn in self.driver.replica.state.members,
        )
        self.tracer_provider = node_tracer_provider(cfg.tracing, "quorum-registry", cfg.id)
        self.service = RegistryService(self)
        self.disk = DiskAlarm(self)
        tracing = [ServerTracing(cfg.id, self.tracer_provider)] if self.tracer_provider else []
        server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=[
                RpcMetrics(self.metrics.rpc_seconds, self.metrics.rpc_errors),
                *tracing,
                MalformedRequests(),
                self.auth,
                ConcurrencyLimits(
                    max_rpcs=cfg.max_concurrent_rpcs,
                    max_watches=cfg.max_watch_streams,
                    max_per_client=cfg.max_rpcs_per_client,
                    identity_of=identity,
                ),
            ],
        )
        registry_pb2_grpc.add_RegistryServicer_to_server(self.service, server)
        self.admin = AdminService(self)
        admin_pb2_grpc.add_AdminServicer_to_server(self.admin, server)
        self.standard = StandardServices(server, lambda: self._ready()[0])
        if self.client_tls is not None:
            port = server.add_secure_port(cfg.listen, self.client_tls.server_credentials())
        else:
            port = server.add_insecure_port(cfg.listen)
        if port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await server.start()
        self._server = server
        await self._start_peer_server()
        _tune_gc()
        self._gc_pauses.install()
        self.driver.start()
        self.disk.start()
        await self.standard.start()
        if cfg.http:
            self._http = HttpServer(
                Routes(
                    registry=self.metrics.registry,
                    healthy=lambda: self.driver.alive(cfg.healthz_stall_s),
                    ready=self._ready,
                    status=self.status,
                    names=self.names,
                    reader=self.auth.reader if self.auth.tokens is not None else None,
                    events=self.events.recent,
                )
            )
            await self._http.start(cfg.http)
        log.info(
            "node %s up: grpc %s, http %s, data %s, incarnation %d",
            cfg.id,
            cfg.listen,
            cfg.http or "-",
            cfg.data_dir,
            self.driver.incarnation,
        )

    async def _start_peer_server(self) -> None:
        """The Peer service, alone on its own port (never on the client port)."""
        cfg = self.cfg
        server = grpc.aio.server(options=SERVER_OPTIONS)
        if self.transport.add_to(server, cfg.peer_bind) == 0:
            raise OSError(f"cannot listen on {cfg.peer_bind} (peer_listen)")
        await server.start()
        self._peer_server = server
        if not cfg.peer_tls:
            log.warning(
                "peer port %s has no TLS: any process that reaches it can act as a peer "
                "(give peer_ca/peer_cert/peer_key; see `registry certs`)",
                cfg.peer_bind,
            )
        log.info("peer port %s (%s), cluster %s", cfg.peer_bind, _tls_word(cfg), self.cluster_id)

    async def drain(self, timeout: float) -> None:
        """Graceful stop, first half: move every local name away by handoff (with state)
        and hand leadership over, so a rolling restart loses nothing."""
        driver = self.driver
        me = self.cfg.id
        driver.control(lambda replica: replica.drain())

        def done() -> bool:
            replica = driver.replica
            if replica.drained():
                return True
            others = [m for m in replica.state.up_members() if m.node != me and not m.draining]
            return not others  # nobody could take the names: stop anyway

        if not await driver.wait_for(done, timeout):
            log.warning("drain: names still here after %.1f s; stopping anyway", timeout)
        elif not driver.replica.drained():
            log.warning("drain: no other member can take this node's names")
        raft = driver.replica.raft
        if raft.role is Role.LEADER:
            target = self._transfer_target()
            if target:
                driver.control(lambda replica: replica.raft.transfer_leadership(target))
                moved = await driver.wait_for(
                    lambda: driver.replica.raft.role is not Role.LEADER,
                    4 * self.cfg.timing.election_timeout,
                )
                log.info("leadership %s to %s", "handed" if moved else "NOT handed", target)

    def _transfer_target(self) -> str:
        """The most caught-up other voter that is up (best placed to win at once)."""
        replica = self.driver.replica
        raft = replica.raft
        up = {m.node for m in replica.state.up_members() if not m.draining}
        best, best_match = "", -1
        for node in sorted(raft.conf.voters - {self.cfg.id}):
            progress = raft.progress(node)
            match = progress.match if progress else 0
            if node in up and match > best_match:
                best, best_match = node, match
        return best

    async def stop(self, *, graceful: bool = False) -> None:
        """Stop everything (after draining, if ``graceful``); safe to call twice."""
        if self._closing:
            await self._stopped.wait()
            return
        self._closing = True
        try:
            await self.standard.stop()  # health NOT_SERVING before draining
            if graceful:
                await self.drain(self.cfg.drain_timeout)
            await self.runtime.shutdown()
            await self.disk.stop()
            await self.driver.stop()
            if self._http is not None:
                await self._http.close()
            if self._server is not None:
                await self._server.stop(grace=0.5)
            if self._peer_server is not None:
                await self._peer_server.stop(grace=0.5)
            await self.service.close()
            await self.admin.close()
            await self.transport.close()
            self.storage.close()
            if self.tracer_provider is not None:
                self.tracer_provider.shutdown()  # export what is still buffered
        finally:
            self._gc_pauses.uninstall()
            self._stopped.set()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.auth.tokens is not None:
            loop.add_signal_handler(signal.SIGHUP, self.auth.tokens.reload)
        await stop.wait()
        log.info("node %s stopping: handing off its workers first", self.cfg.id)
        stop.clear()
        graceful = asyncio.ensure_future(self.stop(graceful=True))
        second = asyncio.ensure_future(stop.wait())
        await asyncio.wait({graceful, second}, return_when=asyncio.FIRST_COMPLETED)
        if not graceful.done():
            log.warning("second signal: stopping at once, without handoff")
            graceful.cancel()
            self._closing = False
            await self.stop(graceful=False)
        second.cancel()

    # -- wiring ------------------------------------------------------------------------

    def address_of(self, node: str) -> str | None:
        if node in self.cfg.peers:
            return self.cfg.peers[node]
        member = self.driver.replica.state.members.get(node)
        if member and member.address:
            return member.address
        admitted = self.driver.replica.state.admitted.get(node)  # added by MemberAdd
        return admitted[0] if admitted else None

    def peer_address_of(self, node: str) -> str | None:
        """A peer's peer port: configured, else its client address's port + 1000."""
        configured = self.cfg.peer_address(node)
        if configured is not None:
            return configured
        admitted = self.driver.replica.state.admitted.get(node)  # added by MemberAdd
        if admitted:
            return admitted[1]
        member = self.driver.replica.state.members.get(node)
        return derive_peer_address(member.address) if member and member.address else None

    def _deliver(self, msg: Any) -> None:
        self.driver.deliver(msg)

    def _lease_deadline(self) -> float:
        driver = getattr(self, "driver", None)  # the hosts start before the driver
        return driver.lease_deadline() if driver is not None else 0.0

    def _on_ready(self, ready: ReplicaReady) -> None:
        self.metrics.on_ready(ready)
        self.events.on_ready(ready)
        if ready.effects:
            self.runtime.apply(ready.effects)

    # RuntimeReports
    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        self.metrics.handoff_finished(name, token)
        self.driver.handoff_done(name, token, state)

    def handoff_ignored(self, name: str, token: int) -> None:
        self.metrics.handoff_finished(name, token)
        self.driver.handoff_ignored(name, token)

    def stopped(self, name: str, token: int) -> None:
        self.driver.stopped(name, token)

    # -- status ------------------------------------------------------------------------

    def _ready(self) -> tuple[bool, str]:
        if self.driver.lease_holds():
            return True, "ready: holding a member lease"
        return False, "not ready: " + self.service.no_quorum_message()

    def cluster_status(self) -> registry_pb2.ClusterStatus:
        replica = self.driver.replica
        raft, state = replica.raft, replica.state
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
            node=self.cfg.id,
            leader=leader,
            leader_address=(self.address_of(leader) or "") if leader else "",
            term=raft.term,
            quorum=self.driver.lease_holds(),
            commit_index=raft.commit_index,
            applied_index=raft.applied_index,
            members=members,
            names=sum(1 for r in state.names.values() if not r.unregistering),
            lease_remaining_s=self.driver.lease_remaining_s(),
        )

    def status(self) -> dict[str, object]:
        """The ``/status`` JSON. Keys of earlier versions stay (tests and tools read
        them); ``events`` holds the newest ``STATUS_EVENTS`` events."""
        status = self.cluster_status()
        replica = self.driver.replica
        raft, state = replica.raft, replica.state
        voters = sorted(raft.conf.voters)
        leases = self._member_leases()
        return {
            "node": status.node,
            "role": raft.role.value,
            "incarnation": self.driver.incarnation,
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
            "activations": sorted(self.runtime.running()),
            "hosts": self.runtime.hosts(),
            "is_leader": raft.role is Role.LEADER,
            "members": [
                {
                    "id": m.id,
                    "address": m.address,
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
            "events": self.events.recent(STATUS_EVENTS),
            "alarms": self.disk.alarms(),
        }

    def _member_leases(self) -> dict[str, dict[str, object]]:
        """Each member's lease as far as this node knows it: its own exactly; the others'
        only on the leader, from when it last acknowledged their heartbeats (a lease runs
        from the heartbeat's send, so ``lease − age`` is an upper bound); elsewhere
        "unknown" — a follower has no way to tell."""
        replica = self.driver.replica
        timing = self.cfg.timing
        leading = replica.raft.role is Role.LEADER
        out: dict[str, dict[str, object]] = {}
        for node, member in replica.state.members.items():
            if node == self.cfg.id:
                left = self.driver.lease_remaining_s()
                out[node] = {
                    "state": "held" if left > 0 else "none",
                    "remaining_s": round(left, 3),
                    "source": "self",
                }
            elif not member.up:
                out[node] = {"state": "down", "source": "view"}
            elif leading:
                age = (replica.agent.ticks - replica.monitor.last_heard(node)) * timing.tick
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
        return names_page(self.driver.replica.state, query, self.address_of, readable)


def _tls_word(cfg: NodeConfig) -> str:
    return "mTLS" if cfg.peer_tls else "plaintext"


def _raft_part(node: str, leader: str, voter: bool) -> str:
    if node == leader:
        return "leader"
    return "voter" if voter else "learner"


GC_THRESHOLDS = (50_000, 2, 10)
"""CPython's default (700, 10, 10) runs a young collection every 700 allocations; a node
holds a few objects per registered name, and with 100k names the resulting collections
stalled the event loop long enough to cost heartbeats (a snapshot took 0.9 s instead of
0.4 s). The middle value bounds a generation-1 pause: it scans the survivors of that many
young collections, and with 20 a node holding 100k activations paused ~300 ms every
1.5 s (registry_gc_pause_seconds) — elections and fences followed. The total work is the
same either way (each survivor is scanned once in generation 1), only in shorter bits."""


def _tune_gc() -> None:
    gc.freeze()  # what start-up built lives as long as the process: never rescan it
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(cfg: NodeConfig) -> None:
    node = Node(cfg)
    await node.start()
    try:
        await node.run_until_signalled()
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
