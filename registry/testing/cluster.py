"""Registry node processes, each in its own network namespace, and a client agent.

``NetnsCluster(root, n)`` builds a ``Network`` with hosts ``n1..nN`` and ``client``,
starts ``registry node`` in every node namespace (``ip netns exec NS python -m
registry.cli node ...``, so the process is the node itself: ``kill -9``, ``SIGSTOP`` and
``SIGCONT`` go straight to it) and an ``AgentClient`` in the client namespace. Each node
listens on its namespace address (clients on 7400, peers on 8400 with mTLS from a
throwaway CA in ``root/certs``, one cluster id), keeps its data directory under ``root``
across restarts, writes its log to ``root/<id>.log`` and inherits ``$REGISTRY_LEDGER``.

``NetnsCluster(..., spare=True)`` adds one more namespace, ``spare``, where the
membership nemesis starts a node under a new id (``add_member``: a learner the test adds
with ``registry member add``) and stops it again once removed (``retire_member``); the
bootstrap ``--peers`` of every node stay the original voters.

Every wait has a deadline and polls a condition. ``close()`` stops everything — paused
processes are resumed first, then SIGTERM, then SIGKILL after a bound — and removes the
network; it is safe to call twice and runs from ``atexit`` if a caller never got to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from registry.node.certs import dev_certs, new_cluster_id, tls_flags
from registry.testing import ledger as ledger_mod
from registry.testing.agent import AgentClient, AgentError
from registry.testing.netns import Network, cleanup_leftovers

T = TypeVar("T")
GRPC_PORT = 7400
HTTP_PORT = 9400
PEER_PORT = GRPC_PORT + 1000
"""The nodes' peer port (the default: client port + 1000)."""
STOP_GRACE_S = 15.0
WORKER_MODULES = ("registry.examples", "registry.testing.ledger_worker")

_open: set[NetnsCluster] = set()


@atexit.register
def _close_leftovers() -> None:  # pragma: no cover - only when a caller forgot close()
    for c in list(_open):
        c.close()


class Timeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something other than ``None``/``False``;
    ``AgentError`` counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except AgentError as exc:
            last = exc
        else:
            if value is not None and value is not False:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}; last seen: {last}")
        time.sleep(interval)  # the poll interval of a bounded wait


@dataclass(slots=True, eq=False)
class NodeProc:
    id: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    stopped_on_purpose: bool = True
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NetnsCluster:
    def __init__(
        self,
        root: Path,
        size: int,
        *,
        preset: str = "local",
        worker_modules: tuple[str, ...] = WORKER_MODULES,
        ledger: Path | None = None,
        log_level: str = "INFO",
        workers: int = 1,
        spare: bool = False,
    ) -> None:
        self.root = root
        self.workers = workers
        """Worker host processes per node (one keeps a 5-node run within 2 CPUs)."""
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self.preset = preset
        self.worker_modules = worker_modules
        self.ledger = ledger or root / "ledger.sqlite"
        self.log_level = log_level
        self.net = Network([*self.ids, *(["spare"] if spare else []), "client"])
        self.host = {n: n for n in self.ids}
        """Node id → the namespace (``Network`` host) it runs in."""
        self.grpc = {n: f"{self.net.addr[n]}:{GRPC_PORT}" for n in self.ids}
        self.http = {n: f"{self.net.addr[n]}:{HTTP_PORT}" for n in self.ids}
        self.nodes = {n: NodeProc(n, root / n, root / f"{n}.log") for n in self.ids}
        self.learners: set[str] = set()
        """Nodes added after bootstrap: started with ``--learner``."""
        self.retired: dict[str, NodeProc] = {}
        """Added nodes that were removed again (their logs stay in ``log_tails``)."""
        self.cluster_id = new_cluster_id("netns")
        self._agent: AgentClient | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> str:
        """Clean up leftovers, build the network, start every node and the agent, and
        wait for a leader that every node follows; returns the leader's id."""
        cleanup_leftovers()
        _open.add(self)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not self.ledger.exists():
                ledger_mod.create(self.ledger)
            self.net.up()
            for n in self.ids:
                self.start_node(n)
            self._agent = AgentClient(self.net.exec_argv("client", []), self.grpc, self.http)
            return self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    @property
    def agent(self) -> AgentClient:
        assert self._agent is not None, "the cluster is not started"
        return self._agent

    def start_node(self, n: str) -> None:
        node = self.nodes[n]
        if node.running():
            raise RuntimeError(f"{n} is already running")
        peers = ",".join(f"{i}={self.grpc[i]}" for i in self.ids)
        argv = [sys.executable, "-m", "registry.cli", "node", "--id", n]
        argv += ["--learner"] if n in self.learners else []
        argv += ["--listen", self.grpc[n], "--http", self.http[n], "--peers", peers]
        argv += ["--data-dir", str(node.data_dir), "--preset", self.preset]
        argv += ["--log-level", self.log_level, "--cluster-id", self.cluster_id]
        argv += ["--workers", str(self.workers)]
        argv += ["--insecure-clients"]  # namespace addresses, test traffic only
        argv += tls_flags(dev_certs(self.root / "certs", [n])[n])
        for module in self.worker_modules:
            argv += ["--worker-module", module]
        env = {**os.environ, ledger_mod.ENV: str(self.ledger)}
        with open(node.log, "ab") as log_file:
            node.proc = subprocess.Popen(
                self.net.exec_argv(self.host[n], argv),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,
            )
        node.paused = False
        node.stopped_on_purpose = False
        node.pids.append(node.proc.pid)

    def add_member(self, n: str, host: str = "spare") -> str:
        """Make node ``n`` (a new id) known, to run in namespace ``host`` with an empty
        data directory as a learner; returns its peer address (for ``member add``).
        Start it with ``start_node``."""
        assert n not in self.nodes and n not in self.retired, f"{n} exists or existed"
        busy = [m for m, h in self.host.items() if h == host and m in self.nodes]
        assert not busy, f"namespace {host} still runs {busy}"
        self.host[n] = host
        self.grpc[n] = f"{self.net.addr[host]}:{GRPC_PORT}"
        self.http[n] = f"{self.net.addr[host]}:{HTTP_PORT}"
        self.nodes[n] = NodeProc(n, self.root / n, self.root / f"{n}.log")
        self.learners.add(n)
        self.agent.request("connect", n, grpc=self.grpc[n], http=self.http[n])
        return f"{self.net.addr[host]}:{PEER_PORT}"

    def retire_member(self, n: str) -> None:
        """Stop an added node (SIGTERM; it was removed from the cluster) and forget it,
        freeing its namespace for the next one."""
        if self.nodes[n].proc is not None:
            self.terminate(n)
        self.retired[n] = self.nodes.pop(n)

    def kill(self, n: str) -> int:
        """``kill -9`` the node; returns the pid that was killed."""
        node = self.nodes[n]
        node.stopped_on_purpose = True
        pid = node.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(10.0)
        node.paused = False
        return pid

    def pause(self, n: str) -> int:
        node = self.nodes[n]
        os.kill(node.pid, signal.SIGSTOP)
        node.paused = True
        return node.pid

    def resume(self, n: str) -> int:
        node = self.nodes[n]
        os.kill(node.pid, signal.SIGCONT)
        node.paused = False
        return node.pid

    def terminate(self, n: str, timeout: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (graceful: the node hands its names off first), SIGKILL after
        ``timeout``; returns the exit code (``None`` if it had to be killed)."""
        node = self.nodes[n]
        node.stopped_on_purpose = True
        if not node.running():
            return node.proc.returncode if node.proc else None
        assert node.proc is not None
        if node.paused:
            self.resume(n)
        node.proc.send_signal(signal.SIGTERM)
        try:
            return node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
            return None

    def terminate_all(self, timeout: float = STOP_GRACE_S) -> None:
        """SIGTERM every running node at once (each drains as best it can), then wait;
        SIGKILL what is still running after ``timeout``."""
        for n, node in self.nodes.items():
            if node.running() and node.proc is not None:
                if node.paused:
                    self.resume(n)
                node.stopped_on_purpose = True
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    def restart(self, n: str) -> None:
        if self.nodes[n].running():
            self.terminate(n)
        self.start_node(n)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.terminate_all()
            if self._agent is not None:
                self._agent.close()
        finally:
            self.net.down()
            _open.discard(self)

    def __enter__(self) -> NetnsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- observation -------------------------------------------------------------------

    def crashed(self) -> dict[str, int]:
        """Nodes whose process ended without the harness stopping it: id → exit code."""
        out = {}
        for n, node in self.nodes.items():
            if node.proc is not None and not node.stopped_on_purpose:
                code = node.proc.poll()
                if code is not None:
                    out[n] = code
        return out

    def running_ids(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.running() and not node.paused]

    def status(self, n: str, timeout: float = 2.0) -> dict[str, Any]:
        result: dict[str, Any] = self.agent.request("cluster", n, timeout=timeout)
        return result

    def http_get(self, n: str, path: str, timeout: float = 3.0) -> tuple[int, str]:
        result = self.agent.request("http", n, timeout=timeout, path=path)
        return int(result["status"]), str(result["body"])

    def leader(self, among: list[str] | None = None) -> str | None:
        """The leader every node of ``among`` (default: the running ones) agrees on, with
        every one of them holding a lease; ``None`` if there is no such agreement."""
        among = among if among is not None else self.running_ids()
        leaders = set()
        for n in among:
            s = self.status(n)
            if not s["quorum"] or not s["leader"]:
                return None
            leaders.add(s["leader"])
        return leaders.pop() if len(leaders) == 1 else None

    def wait_ready(self, timeout: float = 30.0, among: list[str] | None = None) -> str:
        def probe() -> str | None:
            leader = self.leader(among)
            if leader is None:
                return None
            ups = set(self.status(leader)["up"])
            return leader if ups.issuperset(among or self.running_ids()) else None

        return wait_for("a leader followed by every running node", probe, timeout)

    def log_tails(self, lines: int = 60) -> str:
        out = []
        for n, node in {**self.retired, **self.nodes}.items():
            try:
                text = node.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- {n} ({node.log}) ---\n" + "\n".join(text))
        return "\n".join(out)
