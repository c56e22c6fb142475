"""Starting the bench's clusters and asking them the few things every section needs.

The bench runs ``registry.testing.local_cluster.LocalCluster`` (real node processes on
loopback, fsync on: the node default) and always closes what it started. The helpers
here are blocking (short RPCs and polls); sections call them between measurements.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from registry.bench.load import Progress
from registry.testing.local_cluster import RPC_TIMEOUT_S, LocalCluster, Timeout, wait_for
from registry.v1 import registry_pb2 as pb

WORKER_MODULES = ("registry.examples",)
READY_TIMEOUT_S = 60.0


def start(
    root: Path,
    size: int,
    preset: str,
    progress: Progress,
    *,
    fsync: bool = True,
    worker_modules: tuple[str, ...] = (),
) -> LocalCluster:
    """A cluster of ``size`` voters, started and whole; closed again if it does not
    come up. ``fsync=False``: nodes without fsync (``--no-fsync``, not durable).
    ``worker_modules``: loaded by the nodes besides ``WORKER_MODULES``."""
    progress.say(f"starting {size} nodes (preset {preset}) under {root}")
    config: dict[str, object] = {} if fsync else {"fsync": False}
    c = LocalCluster(
        root,
        size,
        preset=preset,
        worker_modules=WORKER_MODULES + worker_modules,
        config=config,
    )
    try:
        for node_id in c.ids:
            c.start_node(node_id)
        wait_whole(c, c.ids, READY_TIMEOUT_S)
    except BaseException as exc:
        tails = c.log_tails(30)
        c.close()
        raise RuntimeError(f"the bench cluster did not come up: {exc}\n{tails}") from exc
    return c


def wait_whole(c: LocalCluster, ids: list[str], timeout: float) -> str:
    """Wait until every node of ``ids`` follows one leader with a lease and sees each of
    ``ids`` up (members not in ``ids`` may be absent); returns the leader."""

    def probe() -> str | None:
        leaders = set()
        for node_id in ids:
            s = c.status(node_id)
            if not s.quorum or not s.leader:
                return None
            up = {m.id for m in s.members if m.up}
            if not set(ids) <= up:
                return None
            leaders.add(s.leader)
        return leaders.pop() if len(leaders) == 1 else None

    return wait_for(f"nodes {', '.join(ids)} whole", probe, timeout)


def seeds(c: LocalCluster, ids: Iterable[str] | None = None) -> list[str]:
    chosen = list(ids) if ids is not None else c.running_ids()
    return [c.nodes[i].grpc_addr for i in chosen]


def leader_status(c: LocalCluster) -> pb.ClusterStatus:
    """The leader's ``ClusterStatus`` (asked of any running node first)."""
    for node_id in c.running_ids():
        try:
            s = c.status(node_id)
        except grpc.RpcError:
            continue
        if s.leader and c.nodes[s.leader].running:
            return c.status(s.leader)
    raise Timeout("no running node names a running leader")


def wait_names(c: LocalCluster, count: int, timeout: float, progress: Progress) -> None:
    """Wait until every running node has applied ``count`` registered names, each held."""

    def probe() -> bool:
        for node_id in c.running_ids():
            s = c.status(node_id, timeout=max(RPC_TIMEOUT_S, 10.0))
            held = sum(m.activations for m in s.members)
            if s.names != count or held != count:
                progress.waiting(f"{node_id}: {s.names:,} names, {held:,} held of {count:,}")
                return False
        return True

    wait_for(f"{count} names held on every node", probe, timeout, interval=0.2)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from ``/proc/<pid>/status`` (``VmRSS``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def node_rss(c: LocalCluster) -> dict[str, int]:
    out = {}
    for node in c.nodes.values():
        if node.proc is not None and node.running:
            out[node.id] = rss_bytes(node.proc.pid)
    return out


def host_rss(c: LocalCluster) -> dict[str, int]:
    """Per running node: the summed RSS of its worker host processes (``/status`` names
    their pids; a host that ended meanwhile counts 0)."""
    out = {}
    for node in c.nodes.values():
        if node.proc is None or not node.running:
            continue
        total = 0
        for host in c.http_json(node.id, "/status").get("hosts", []):
            with contextlib.suppress(OSError, RuntimeError):
                total += rss_bytes(int(host["pid"]))
        out[node.id] = total
    return out


FENCES = re.compile(rb"^registry_fences_total (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Churn:
    """What a section may cost the cluster, read from the nodes before and after it."""

    term: int
    """The highest Raft term a running node reports."""
    fences: dict[str, int]
    """Node → ``registry_fences_total`` (a process's own count: it restarts at 0)."""
    pids: dict[str, int]
    """Node → the pid whose counters ``fences`` holds."""

    @staticmethod
    def read(c: LocalCluster) -> Churn:
        term, fences, pids = 0, {}, {}
        for node in c.nodes.values():
            if node.proc is None or not node.running:
                continue
            with contextlib.suppress(grpc.RpcError, OSError):
                term = max(term, c.status(node.id, timeout=max(RPC_TIMEOUT_S, 10.0)).term)
                code, _, body = c.http_get(node.id, "/metrics", timeout=10.0)
                found = FENCES.search(body) if code == 200 else None
                if found:
                    fences[node.id] = int(float(found.group(1)))
                    pids[node.id] = node.proc.pid
        return Churn(term=term, fences=fences, pids=pids)

    def since(self, before: Churn, *, excluding: str = "") -> tuple[int, int]:
        """(term changes, fences) from ``before`` to this reading. A node restarted in
        between counts every fence of its new process; one not running at the end is not
        counted (its counter ended with it: the failover section kills nodes). The
        fences of node ``excluding`` are left out."""
        fences = 0
        for node, count in self.fences.items():
            if node == excluding:
                continue
            same = before.pids.get(node) == self.pids[node]
            fences += count - (before.fences.get(node, 0) if same else 0)
        return max(0, self.term - before.term), fences


def disk_bytes(data_dir: Path) -> dict[str, int]:
    """Bytes of a node's log segments and snapshot files."""
    out = {"log": 0, "snapshot": 0, "other": 0}
    for entry in os.scandir(data_dir):
        if not entry.is_file():
            continue
        size = entry.stat().st_size
        if entry.name.endswith(".seg"):
            out["log"] += size
        elif entry.name.endswith(".snap"):
            out["snapshot"] += size
        else:
            out["other"] += size
    return out
