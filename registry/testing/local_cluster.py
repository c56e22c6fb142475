"""Real node processes on loopback: start, kill, restart, wait — every wait bounded.

``LocalCluster`` runs N ``registry node`` processes (``sys.executable -m registry.cli
node``) on free loopback ports with data directories under one root, logs each to a file,
and gives a blocking gRPC stub per node. It is used by the ``tests/cluster`` fixtures
(through ``tests/cluster/harness.py``) and by ``registry bench``, so it ships with the
package and needs nothing from a checkout: nodes import the same ``registry`` package as
the process that starts them.

Rules it keeps:

- Ports are chosen by binding port 0 (all at once, so they differ) and stay fixed for the
  cluster's life: a restarted node reuses its address and its data directory.
- Every wait has a deadline and polls a condition (``wait_for``); nothing sleeps in place
  of a condition.
- Peers talk on ports of their own with mTLS: a throwaway CA and one certificate per node
  in ``<root>/certs``, and a random cluster id per cluster (``cluster_id``).
- ``close()`` always stops every process it started (SIGTERM, then SIGKILL after a bound)
  and is safe to call twice; an ``atexit`` hook does the same if the caller never gets to
  it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

import registry
from registry.node.certs import NodeFiles, dev_certs, issue, new_cluster_id, tls_flags
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc

PACKAGE_ROOT = Path(registry.__file__).resolve().parents[1]
"""The directory holding the ``registry`` package the harness itself runs from (the
checkout, or site-packages); put first on the nodes' ``PYTHONPATH`` so they run the same
code, and — in a checkout — can import worker modules such as ``tests.cluster.workers``."""
__all__ = [
    "CHANNEL_OPTIONS",
    "PACKAGE_ROOT",
    "RPC_TIMEOUT_S",
    "STOP_GRACE_S",
    "TRANSIENT",
    "LocalCluster",
    "NodeExited",
    "NodeProc",
    "NotYet",
    "Timeout",
    "call_until",
    "cluster",
    "describe",
    "free_ports",
    "register_until",
    "rpc_error",
    "wait_for",
]

T = TypeVar("T")

CHANNEL_OPTIONS = [
    # A node that comes back should be reachable at once, not after a long backoff.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]
RPC_TIMEOUT_S = 2.0
"""Per-attempt deadline of the helpers' RPCs, seconds."""
STOP_GRACE_S = 15.0
"""How long ``close()`` waits after SIGTERM before SIGKILL, seconds."""

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - only when a caller forgot close()
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


class Timeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


class NotYet(AssertionError):
    """A probe's "not yet" that is no gRPC error (a name a lagging follower has not
    applied, a name waiting for a member): ``wait_for`` polls on; anywhere else it
    fails the caller like any assertion."""


class NodeExited(AssertionError):
    """A node process ended while the harness waited for it; the message has its log."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something other than ``None``/``False``.

    ``probe`` may raise ``grpc.RpcError`` or ``OSError`` (a node still starting or just
    killed) or ``NotYet``: that counts as "not yet" and the last error is named if time
    runs out.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except (grpc.RpcError, OSError, NotYet) as exc:
            last = describe(exc)
        else:
            if value is not None and value is not False:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}; last seen: {last}")
        time.sleep(interval)


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


_PORT_FLOOR = 10000
_port_cursor: int | None = None


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out for ``bind(port 0)`` and outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    """This process's share of the ports below the ephemeral range.

    Ports picked inside the ephemeral range race the kernel: a worker host binding
    port 0 could take a port picked a moment earlier for another node's HTTP server
    (seen in CI: ``address already in use`` on a node's --http). Below the range the
    kernel never picks on its own, and each pytest-xdist worker gets its own slice so
    two test processes do not race each other either."""
    top = max(_ephemeral_floor(), _PORT_FLOOR + 1000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (top - _PORT_FLOOR) // max(count, 1)
    start = _PORT_FLOOR + (index % max(count, 1)) * width
    return range(start, start + width)


def _bindable(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (bound together, then released).

    Taken in turn from this process's slice below the ephemeral range (see
    ``_port_slice``), so a port is not handed out again soon after it was used."""
    global _port_cursor
    span = _port_slice()
    if _port_cursor is None or _port_cursor not in span:
        _port_cursor = span.start + (os.getpid() * 7919) % len(span)
    socks: list[socket.socket] = []
    try:
        for _ in range(len(span)):
            port = _port_cursor
            _port_cursor = span.start + (port + 1 - span.start) % len(span)
            s = _bindable(port)
            if s is not None:
                socks.append(s)
                if len(socks) == count:
                    return [sock.getsockname()[1] for sock in socks]
        raise OSError(f"no {count} free loopback ports in {span.start}-{span.stop - 1}")
    finally:
        for s in socks:
            s.close()


@dataclass
class NodeProc:
    id: str
    grpc_addr: str
    http_addr: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    """Exit codes of earlier processes of this node, oldest first."""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """N node processes on loopback; see the module docstring."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        preset: str = "local",
        worker_modules: tuple[str, ...] = ("registry.examples",),
        config: dict[str, object] | None = None,
        log_level: str = "INFO",
        peer_args: tuple[str, ...] | None = None,
        certs: Path | None = None,
        cwd: Path | None = None,
        python_path: tuple[str, ...] = (),
        client_tls: bool = False,
    ) -> None:
        self.root = root
        self.cwd = cwd
        """The nodes' working directory (default: ``root``); the pytest plugin passes the
        user's, so that their worker modules import as in their tests."""
        self.python_path = python_path
        """Put on the nodes' ``PYTHONPATH`` after ``PACKAGE_ROOT``."""
        self.preset = preset
        self.worker_modules = worker_modules
        self.config = config or {}
        self.log_level = log_level
        self.peer_args = peer_args
        """Flags that replace ``--peers <static list>`` for every node (e.g. DNS discovery)."""
        ports = free_ports(3 * size)
        self.nodes: dict[str, NodeProc] = {}
        self.peer_addr = {f"n{i + 1}": f"127.0.0.1:{ports[2 * size + i]}" for i in range(size)}
        """Each node's peer port (given explicitly: +1000 might be taken on a busy host)."""
        self.cluster_id = new_cluster_id("test")
        self.certs = dev_certs(certs or root / "certs", list(self.peer_addr))
        """Peer mTLS files per node (``certs``: a CA directory shared with another cluster)."""
        self.client_tls: NodeFiles | None = None
        """With ``client_tls``: one client-port certificate all nodes present (SANs: every
        node id, 127.0.0.1, localhost), issued by the cluster CA; the harness dials
        with it as its trust root."""
        self.harness_cert: NodeFiles | None = None
        """With ``client_tls``: the client certificate the harness presents (CN
        ``harness``), for nodes configured with ``client_ca``."""
        if client_tls:
            self.client_tls = issue(
                certs or root / "certs",
                "client-port",
                sans=(*self.peer_addr, "127.0.0.1", "localhost"),
            )
            self.harness_cert = issue(certs or root / "certs", "harness")
            self.config = {
                **self.config,
                "client_cert": str(self.client_tls.cert),
                "client_key": str(self.client_tls.key),
            }
        for i in range(size):
            node_id = f"n{i + 1}"
            self.nodes[node_id] = NodeProc(
                id=node_id,
                grpc_addr=f"127.0.0.1:{ports[2 * i]}",
                http_addr=f"127.0.0.1:{ports[2 * i + 1]}",
                data_dir=root / node_id,
                log_path=root / f"{node_id}.log",
            )
        self.peers = ",".join(
            f"{n.id}={n.grpc_addr}/{self.peer_addr[n.id]}" for n in self.nodes.values()
        )
        self.learners: set[str] = set()
        """Nodes added after bootstrap (``add_node``): started with ``--learner``."""
        self.source: dict[str, Path] = {}
        """Per node, a source tree to run instead of this one (an earlier release's
        ``registry`` package, for rolling-upgrade tests); empty: this checkout."""

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ids(self) -> list[str]:
        return list(self.nodes)

    def running_ids(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.running]

    def start(self, timeout: float = 30.0) -> str:
        """Start every node and wait until the cluster is whole; returns the leader."""
        for node_id in self.nodes:
            self.start_node(node_id)
        return self.wait_ready(timeout)

    def start_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert not node.running, f"{node_id} is already running"
        node.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "registry.cli",
            "node",
            "--id",
            node.id,
            "--listen",
            node.grpc_addr,
            "--http",
            node.http_addr,
            "--data-dir",
            str(node.data_dir),
            *(
                ("--peers", self.peers, "--peer-listen", self.peer_addr[node.id])
                if self.peer_args is None
                else self.peer_args  # peer port: the discovered client port + 1000
            ),
            "--cluster-id",
            self.cluster_id,
            *tls_flags(self.certs[node.id]),
            "--preset",
            self.preset,
            "--log-level",
            self.log_level,
            *(("--learner",) if node.id in self.learners else ()),
        ]
        for module in self.worker_modules:
            argv += ["--worker-module", module]
        if "workers" not in self.config and node.id not in self.source:
            # One worker host per node unless a test asks for more: the production default
            # (one per CPU) would put 2-3x the processes of a cluster on a 2-core CI box.
            # (A node run from an older release's source has no --workers flag.)
            argv += ["--workers", "1"]
        if self.config:
            path = self.root / f"{node.id}.toml"
            path.write_text(_toml(self.config), encoding="utf-8")
            argv += ["--config", str(path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(
                None,
                [
                    str(self.source.get(node.id, PACKAGE_ROOT)),
                    *self.python_path,
                    env.get("PYTHONPATH"),
                ],
            )
        )
        node.starts += 1
        with node.log_path.open("ab") as log:
            log.write(f"==== start #{node.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            node.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd or self.root,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only the harness
            )
        _live.add(node.proc)
        if node.channel is None:
            # One channel per node for the cluster's life: it reconnects by itself when the
            # node restarts (short backoff), so stubs taken earlier keep working.
            node.channel = (
                grpc.insecure_channel(node.grpc_addr, options=CHANNEL_OPTIONS)
                if self.client_tls is None
                else grpc.secure_channel(
                    node.grpc_addr,
                    grpc.ssl_channel_credentials(
                        self.client_tls.ca.read_bytes(),
                        *self._harness_key_and_cert(),
                    ),
                    options=CHANNEL_OPTIONS,
                )
            )

    def _harness_key_and_cert(self) -> tuple[bytes, bytes]:
        assert self.harness_cert is not None
        return self.harness_cert.key.read_bytes(), self.harness_cert.cert.read_bytes()

    def add_node(self, node_id: str) -> NodeProc:
        """A new node (ports, certificate, empty data dir) that joins as a learner once
        started and added (``registry member add``); the bootstrap ``--peers`` stay."""
        assert node_id not in self.nodes, f"{node_id} exists"
        grpc_port, http_port, peer_port = free_ports(3)
        self.peer_addr[node_id] = f"127.0.0.1:{peer_port}"
        self.certs.update(dev_certs(self.certs[self.ids[0]].ca.parent, [node_id]))
        self.learners.add(node_id)
        self.nodes[node_id] = NodeProc(
            id=node_id,
            grpc_addr=f"127.0.0.1:{grpc_port}",
            http_addr=f"127.0.0.1:{http_port}",
            data_dir=self.root / node_id,
            log_path=self.root / f"{node_id}.log",
        )
        return self.nodes[node_id]

    def kill(self, node_id: str) -> None:
        """``kill -9`` the node and reap it."""
        node = self.nodes[node_id]
        assert node.proc is not None and node.running, f"{node_id} is not running"
        node.proc.kill()
        self._reap(node, 10.0)

    def terminate(self, node_id: str, timeout: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the node; return its exit code, or ``None`` if it had not exited
        within ``timeout`` (it is then killed, so nothing is left running)."""
        node = self.nodes[node_id]
        assert node.proc is not None and node.running, f"{node_id} is not running"
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            self._reap(node, 10.0)
            return None
        code = self._reap(node, 1.0)
        return code

    def terminate_all(self, timeout: float = STOP_GRACE_S) -> dict[str, int | None]:
        """SIGTERM every running node at once; exit codes (``None``: had to be killed)."""
        running = [n for n in self.nodes.values() if n.running]
        for node in running:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for node in running:
            assert node.proc is not None
            try:
                node.proc.wait(max(0.0, deadline - time.monotonic()))
                codes[node.id] = self._reap(node, 1.0)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                self._reap(node, 10.0)
                codes[node.id] = None
        return codes

    def wait_exit(self, node_id: str, timeout: float) -> int:
        """Wait for the node's process to end on its own (a fail-stop); its exit code.
        Raises ``subprocess.TimeoutExpired`` if it is still running after ``timeout``."""
        node = self.nodes[node_id]
        assert node.proc is not None, f"{node_id} was not started"
        node.proc.wait(timeout)
        return self._reap(node, 1.0)

    def restart(self, node_id: str) -> None:
        """Start a stopped node again with the same address and data directory."""
        self.start_node(node_id)

    def close(self) -> None:
        """Stop every process (SIGTERM, SIGKILL after ``STOP_GRACE_S``); idempotent."""
        with contextlib.suppress(Exception):
            self.terminate_all(STOP_GRACE_S)
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:  # pragma: no cover
                node.proc.kill()
                self._reap(node, 10.0)
            if node.channel is not None:
                node.channel.close()
                node.channel = None

    def _reap(self, node: NodeProc, timeout: float) -> int:
        assert node.proc is not None
        code = node.proc.wait(timeout)
        _live.discard(node.proc)
        node.exits.append(code)
        node.proc = None
        return code

    def crashed(self) -> dict[str, int]:
        """Nodes whose process ended without the harness stopping it: id → exit code."""
        return {
            n.id: code
            for n in self.nodes.values()
            if n.proc is not None and (code := n.proc.poll()) is not None
        }

    # -- access ------------------------------------------------------------------------

    def stub(self, node_id: str) -> Any:
        """A blocking ``RegistryStub`` for the node (works across its restarts)."""
        node = self.nodes[node_id]
        assert node.channel is not None, f"{node_id} was never started"
        return registry_pb2_grpc.RegistryStub(node.channel)

    def channel(self, node_id: str) -> grpc.Channel:
        node = self.nodes[node_id]
        assert node.channel is not None, f"{node_id} was never started"
        return node.channel

    def status(self, node_id: str, timeout: float = RPC_TIMEOUT_S) -> pb.ClusterStatus:
        status: pb.ClusterStatus = self.stub(node_id).Cluster(pb.ClusterRequest(), timeout=timeout)
        return status

    def http_get(self, node_id: str, path: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
        """GET ``path`` from the node's HTTP server: (status, content type, body)."""
        url = f"http://{self.nodes[node_id].http_addr}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers["Content-Type"], exc.read()

    def http_json(self, node_id: str, path: str = "/status") -> dict[str, Any]:
        code, ctype, body = self.http_get(node_id, path)
        assert code == 200 and ctype == "application/json", (code, ctype, body[:200])
        value = json.loads(body)
        assert isinstance(value, dict)
        return value

    def owner(self, name: str, via: str | None = None) -> tuple[str, int]:
        """Where ``name`` runs, as (node, token), asked of ``via`` (default: any node
        that answers)."""
        candidates = [via] if via else self.running_ids()
        last: Exception | None = None
        for node_id in candidates:
            try:
                reply = self.stub(node_id).WhereIs(
                    pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                last = exc
                continue
            if reply.HasField("location"):
                return reply.location.node, reply.location.token
            raise NotYet(f"{name!r} is waiting for a member")
        # NotYet: asked of a follower that has not applied the name yet, this is "not
        # yet" inside ``wait_for`` (CI once failed at the first probe), a failure outside.
        raise NotYet(f"no node answered WhereIs({name!r}): {last and describe(last)}")

    # -- waiting -----------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0, among: list[str] | None = None) -> str:
        """Wait until every running node (or ``among``) knows one and the same leader,
        holds a lease, and sees every member of the cluster up; returns the leader."""
        ids = among or self.running_ids()

        def probe() -> str | None:
            leaders = set()
            for node_id in ids:
                # Every node first: an exited node must fail the wait even while
                # another node is still the reason to keep waiting.
                self._check_alive(node_id)
            for node_id in ids:
                s = self.status(node_id)
                if not s.quorum or not s.leader:
                    return None
                members = {m.id: m.up for m in s.members}
                if sorted(members) != sorted(self.nodes) or not all(members.values()):
                    return None
                leaders.add(s.leader)
            return leaders.pop() if len(leaders) == 1 else None

        try:
            return wait_for(f"a whole cluster ({', '.join(ids)})", probe, timeout)
        except Timeout as exc:
            states = []
            for node_id in ids:
                try:
                    s = self.status(node_id)
                    states.append(
                        f"{node_id}: leader={s.leader or '-'} term={s.term} quorum={s.quorum} "
                        f"members={[(m.id, m.up) for m in s.members]}"
                    )
                except grpc.RpcError as rpc_exc:
                    states.append(f"{node_id}: {describe(rpc_exc)}")
            raise Timeout(f"{exc}\n" + "\n".join(states)) from None

    @property
    def seeds(self) -> list[str]:
        """Every node's client address (``host:port``), for ``registry.Client(seeds)``."""
        return [n.grpc_addr for n in self.nodes.values()]

    # -- diagnostics -------------------------------------------------------------------

    def _check_alive(self, node_id: str) -> None:
        """Fail at once, with its log tail, if a node being waited for has exited (a bad
        worker module, a port in use) instead of waiting out the timeout."""
        node = self.nodes[node_id]
        if node.proc is not None and node.proc.poll() is not None:
            raise NodeExited(
                f"node {node_id} exited with code {node.proc.returncode} while the cluster "
                f"was starting:\n{self.log_tails(lines=30)}"
            )

    def log_tails(self, lines: int = 150) -> str:
        out = []
        for node in self.nodes.values():
            try:
                text = node.log_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                text = "(no log)"
            tail = text.splitlines()[-lines:]
            out.append(f"---- {node.id} ({node.log_path}, exits {node.exits}) ----")
            out.extend(tail)
        return "\n".join(out)


def _toml(values: dict[str, object]) -> str:
    """Top-level scalar fields as TOML (enough for the limits tests override)."""
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, int | float):
            out.append(f"{key} = {value}")
        else:
            out.append(f"{key} = {json.dumps(str(value))}")
    return "\n".join(out) + "\n"


TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""What a call may answer while its name moves, fails over or waits for a quorum."""


def call_until(
    c: LocalCluster,
    via: str,
    name: str,
    payload: bytes,
    timeout: float,
    accept: Callable[[pb.CallResponse], bool] = lambda _: True,
) -> pb.CallResponse:
    """Call ``name`` through node ``via`` until a reply satisfies ``accept``.

    Transient statuses (``TRANSIENT``) are retried until ``timeout``; any other status
    fails at once, since it says something about the request, not about timing.
    """

    def probe() -> pb.CallResponse | None:
        try:
            reply: pb.CallResponse = c.stub(via).Call(
                pb.CallRequest(name=name, payload=payload), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if exc.code() in TRANSIENT:
                raise
            raise AssertionError(f"Call({name!r}) via {via}: {describe(exc)}") from None
        return reply if accept(reply) else None

    return wait_for(f"Call({name!r}, {payload!r}) via {via}", probe, timeout)


def register_until(c: LocalCluster, via: str, spec: pb.NameSpec, timeout: float) -> None:
    """Register ``spec`` through node ``via``, retrying while the cluster has no leader.

    What the SDK's retry loop does, for tests that talk to a node's stub directly: on the
    2-core CI machine a ``local``-preset leader can miss its 0.2 s election timeout, and
    ``Register`` then answers ``UNAVAILABLE`` for the moment of the election. A retry
    that finds the name already registered means an earlier attempt landed (its reply was
    lost with the leadership), which is success. Any other status fails at once.
    """
    attempts = 0

    def probe() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            c.stub(via).Register(pb.RegisterRequest(spec=spec), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() in TRANSIENT:
                raise
            if exc.code() is grpc.StatusCode.ALREADY_EXISTS and attempts > 1:
                return True
            raise AssertionError(f"Register({spec.name!r}) via {via}: {describe(exc)}") from None
        return True

    wait_for(f"Register({spec.name!r}) via {via}", probe, timeout)


def rpc_error(fn: Callable[[], object]) -> grpc.RpcError:
    """Run ``fn`` and return the gRPC error it raised (failing if it succeeded)."""
    try:
        result = fn()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"expected a gRPC error, got {result!r}")


@contextlib.contextmanager
def cluster(root: Path, size: int = 3, **kwargs: Any) -> Iterator[LocalCluster]:
    """A started cluster that is always stopped on the way out."""
    c = LocalCluster(root, size, **kwargs)
    try:
        c.start()
        yield c
    finally:
        c.close()
