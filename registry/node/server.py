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
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc.aio

from registry.core.controls import Drain, TransferLeadership, UseBinaryEntries
from registry.core.replica import ReplicaReady
from registry.node import cluster_id
from registry.node.admin import AdminService
from registry.node.auth.gate import AuthGate, Tokens, identity
from registry.node.checkpoints import CheckpointDesk
from registry.node.client_tls import ClientTls
from registry.node.config import NodeConfig
from registry.node.directory import Directory
from registry.node.disk_alarm import DiskAlarm
from registry.node.driver import Driver
from registry.node.events import EventLog
from registry.node.gc_pauses import BulkFreezer, GcPauses, tune_gc
from registry.node.grpc_services import StandardServices
from registry.node.hosts import HostSupervisor, call_port
from registry.node.http import HttpServer, Routes
from registry.node.limits import ConcurrencyLimits
from registry.node.loop_stalls import LoopStalls
from registry.node.metrics import NodeMetrics
from registry.node.peer_guard import view_of
from registry.node.peer_tls import PeerTls
from registry.node.report import StatusReport
from registry.node.rpc_metrics import RpcMetrics
from registry.node.service import RegistryService
from registry.node.status import MalformedRequests
from registry.node.storage import FileStorage
from registry.node.storage_check import load_checked
from registry.node.transport import SERVER_OPTIONS, PeerTransport
from registry.node.watch import WatchHub
from registry.tracing import ServerTracing, node_tracer_provider
from registry.v1 import admin_pb2_grpc, registry_pb2_grpc

log = logging.getLogger("registry.node")


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
        self.metrics = NodeMetrics()
        self.storage.on_sync = self.metrics.fsync_seconds.observe
        self.directory = Directory(
            lambda: self.driver.view.state,
            lease_holds=lambda: self.driver.lease_holds(),
            peers=cfg.peers,
            configured_peer_address=cfg.peer_address,
            me=cfg.id,
            call_address=lambda name: self.runtime.call_address(name),
            active=lambda name: self.runtime.active(name),
        )
        self.transport = PeerTransport(
            cfg.id,
            self.directory.peer_address_of,
            self._deliver,
            cluster_id=self.cluster_id,
            tls=PeerTls.load(cfg.peer_ca, cfg.peer_cert, cfg.peer_key) if cfg.peer_tls else None,
            view=lambda: view_of(self.driver.view, configured),
            refused=lambda reason: self.metrics.peer_refused.labels(reason).inc(),
            rtt=lambda peer, seconds: self.metrics.peer_rtt_seconds.labels(peer).observe(seconds),
            http_address=advertised_http(cfg),
            peer_address=advertised_peer(cfg),
            binary_entries=lambda: self.driver.submit(UseBinaryEntries()),
        )
        timing = cfg.timing
        self.runtime = HostSupervisor(
            node=cfg.id,
            workers=cfg.workers,
            worker_modules=cfg.worker_modules,
            reports=_Reports(self.metrics, lambda: self.driver),
            lease_deadline=self._lease_deadline,
            fence_grace=timing.fence_grace,
            handoff_deadline=timing.handoff_deadline,
            max_state_bytes=cfg.max_state_bytes,
            log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            mailbox_limit=cfg.mailbox_limit,
            mailbox_bytes=cfg.mailbox_bytes,
            calls=call_port(cfg) if cfg.call_ports else None,
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
        self.disk = DiskAlarm(cfg, self.driver)
        self.metrics.read_from(self.driver, self.runtime, self.disk)
        self.checkpoints = CheckpointDesk(
            self.driver,
            max_state_bytes=cfg.max_state_bytes,
            metrics=self.metrics.registry,
            max_entry_bytes=cfg.max_entry_bytes,
            passive_count=self.runtime.passive_count,
        )
        self.runtime.on_call_stats = self.metrics.calls.add
        self.runtime.on_checkpoint = self.checkpoints.serve
        self.runtime.on_quit = self.checkpoints.quit
        self.runtime.on_remind = self.checkpoints.serve_remind
        self._gc_pauses = GcPauses(self.metrics.gc_pause_seconds)
        self._loop_stalls: asyncio.Task[None] | None = None
        self._freezer = BulkFreezer()
        self.events = EventLog(lambda: self.driver.view)
        self.watches = WatchHub(self.directory)
        self.driver.listeners.on_applied.append(self.watches.on_ready)
        self.client_tls = ClientTls.load(cfg)
        tokens = Tokens(Path(cfg.token_file)) if cfg.auth != "off" else None
        self.auth = AuthGate(
            cfg.auth,
            tokens,
            is_peer=lambda cn: cn in cfg.peers or cn in self.driver.view.state.members,
        )
        self.report = StatusReport(
            cfg,
            self.driver,
            self.directory,
            reach=self.transport,
            runtime=self.runtime,
            events=self.events,
            disk=self.disk,
        )
        self.tracer_provider = node_tracer_provider(cfg.tracing, "quorum-registry", cfg.id)
        self.service = RegistryService(
            cfg,
            self.driver,
            self.directory,
            health=self.report,
            workers=self.runtime,
            disk=self.disk,
            watches=self.watches,
            client_tls=self.client_tls,
            tracer_provider=self.tracer_provider,
        )
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
        self.admin = AdminService(
            cfg,
            self.driver,
            self.directory,
            health=self.report,
            reach=self.transport,
            cluster_id=self.cluster_id,
        )
        admin_pb2_grpc.add_AdminServicer_to_server(self.admin, server)
        self.standard = StandardServices(server, lambda: self.report.ready()[0])
        if self.client_tls is not None:
            port = server.add_secure_port(cfg.listen, self.client_tls.server_credentials())
        else:
            port = server.add_insecure_port(cfg.listen)
        if port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await server.start()
        self._server = server
        await self._start_peer_server()
        tune_gc()
        self._gc_pauses.install()
        self.driver.start()
        stalls = LoopStalls(
            self.metrics.event_loop_lag_seconds, slowest=self.driver.ready_loop.take_slowest
        )
        self._loop_stalls = asyncio.get_running_loop().create_task(
            stalls.run(), name="registry-loop-stalls"
        )
        self.disk.start()
        await self.standard.start()
        if cfg.http:
            self._http = HttpServer(
                Routes(
                    registry=self.metrics.registry,
                    healthy=lambda: self.driver.alive(cfg.healthz_stall_s),
                    ready=self.report.ready,
                    status=self.report.status,
                    names=self.report.names,
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
        driver.submit(Drain())

        def done() -> bool:
            view = driver.view
            if view.drained():
                return True
            others = [m for m in view.state.up_members() if m.node != me and not m.draining]
            return not others  # nobody could take the names: stop anyway

        if not await driver.wait_for(done, timeout):
            log.warning("drain: names still here after %.1f s; stopping anyway", timeout)
        elif not driver.view.drained():
            log.warning("drain: no other member can take this node's names")
        if driver.view.is_leader:
            target = driver.view.transfer_target()
            if target:
                driver.submit(TransferLeadership(target=target))
                moved = await driver.wait_for(
                    lambda: not driver.view.is_leader,
                    4 * self.cfg.timing.election_timeout,
                )
                log.info("leadership %s to %s", "handed" if moved else "NOT handed", target)

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
            if self._loop_stalls is not None:
                self._loop_stalls.cancel()
            self._stopped.set()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.auth.tokens is not None:
            loop.add_signal_handler(signal.SIGHUP, self._reload_tokens)
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

    def _reload_tokens(self) -> None:
        assert self.auth.tokens is not None
        if self.auth.tokens.reload():
            self.runtime.reload_tokens()  # the hosts' call ports check tokens too

    # -- wiring ------------------------------------------------------------------------

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
        if ready.state_reset:
            self._freezer.rebuilt()  # a restored snapshot is a new bulk of objects
        if ready.applied or ready.state_reset:
            self._freezer.grew(len(self.driver.view.state.names))


class _Reports:
    """The worker runtime's reports (``RuntimeReports``): timed, then handed to the core.
    The hosts start before the driver exists, hence the late lookup."""

    def __init__(self, metrics: NodeMetrics, driver: Callable[[], Driver]) -> None:
        self._metrics = metrics
        self._driver = driver

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        self._metrics.handoff_finished(name, token)
        self._driver().handoff_done(name, token, state)

    def handoff_ignored(self, name: str, token: int) -> None:
        self._metrics.handoff_finished(name, token)
        self._driver().handoff_ignored(name, token)

    def stopped(self, name: str, token: int) -> None:
        self._driver().stopped(name, token)


def advertised_http(cfg: NodeConfig) -> str:
    """Where others reach this node's status page: ``http``, with a wildcard bind host
    replaced by the host clients dial (``advertise``/``listen``)."""
    return _advertised(cfg, cfg.http) if cfg.http else ""


def advertised_peer(cfg: NodeConfig) -> str:
    """Where others reach this node's peer port: as ``peers`` names it, else the peer
    bind address with a wildcard host replaced as for ``advertised_http``."""
    return cfg.peer_address(cfg.id) or _advertised(cfg, cfg.peer_bind)


def _advertised(cfg: NodeConfig, bind: str) -> str:
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = cfg.address.rpartition(":")[0]
    return f"{host}:{port}"


def _tls_word(cfg: NodeConfig) -> str:
    return "mTLS" if cfg.peer_tls else "plaintext"


async def serve(cfg: NodeConfig) -> None:
    node = Node(cfg)
    await node.start()
    try:
        await node.run_until_signalled()
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
