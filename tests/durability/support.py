"""Power-loss machinery: node processes whose data directories live on LazyFS mounts, a
bounded registration storm that records what was acknowledged, and the checks every
scenario makes after the power comes back.

Each node gets a mount of its own (``<root>/<id>``, backed by ``<root>/<id>.disk``), so
one node can lose power while the others keep running and keep their page cache.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from registry.testing.lazyfs import LazyFS, TornWrite
from registry.testing.local_cluster import (
    RPC_TIMEOUT_S,
    LocalCluster,
    Timeout,
    describe,
    wait_for,
)
from registry.v1 import registry_pb2 as pb

RECOVERY_S = 30.0
"""Bound on a restarted cluster becoming whole again, seconds."""


class LazyCluster(LocalCluster):
    """A ``LocalCluster`` whose node data directories are LazyFS mounts."""

    def __init__(self, root: Path, size: int, *, lazyfs: Path, **kwargs: Any) -> None:
        super().__init__(root, size, **kwargs)
        self.disks = {
            node.id: LazyFS(lazyfs, node.data_dir, root / f"{node.id}.disk", root / f"{node.id}.fs")
            for node in self.nodes.values()
        }

    def start_node(self, node_id: str) -> None:
        if not self.disks[node_id].alive:
            self.disks[node_id].restart()
        super().start_node(node_id)

    def power_loss(self, ids: Iterable[str]) -> None:
        """Cut the power of ``ids`` at once: freeze them, drop every byte they had not
        fsynced, then kill them. Their disks stay mounted for the restart."""
        ids = list(ids)
        for node_id in ids:
            proc = self.nodes[node_id].proc
            assert proc is not None and proc.poll() is None, f"{node_id} is not running"
            os.kill(proc.pid, signal.SIGSTOP)
        for node_id in ids:
            self.disks[node_id].clear_cache()
        for node_id in ids:
            self.kill(node_id)

    def arm_torn_write(self, node_id: str, torn: TornWrite) -> None:
        """Remount ``node_id``'s (stopped) disk with a torn write armed."""
        self.disks[node_id].restart(torn)

    def close(self) -> None:
        try:
            for node_id in self.running_ids():
                self.kill(node_id)  # a graceful stop would drain every name: slow, not tested
            super().close()
        finally:
            for disk in self.disks.values():
                disk.close()

    def log_tails(self, lines: int = 150) -> str:
        disks = [f"---- LazyFS {i} ----\n{d.log_tail(10)}" for i, d in self.disks.items()]
        return "\n".join([super().log_tails(lines), *disks])


@dataclass
class Storm:
    """``writers`` threads registering fresh names (one ``Register`` each, or
    ``RegisterMany`` of ``batch``) through the nodes in ``via`` (default: the running
    ones), round-robin, until
    ``stop()``, ``limit`` names or ``seconds``. A name is acknowledged when its call
    returned OK; a failed call is never retried (its name may or may not exist)."""

    cluster: LocalCluster
    prefix: str
    via: list[str] = field(default_factory=list)
    writers: int = 8
    batch: int = 1
    limit: int = 20_000
    seconds: float = 20.0
    acked: dict[str, int] = field(default_factory=dict)
    """Acknowledged name → the log index its write returned (its first token)."""
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    """Why calls failed: status and message → count."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _issued: int = 0
    _inflight: int = 0

    def start(self) -> Storm:
        for w in range(self.writers):
            t = threading.Thread(target=self._write, args=(w,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def more(self, count: int) -> None:
        """Let the writers go on for ``count`` more names."""
        with self._lock:
            self.limit += count

    def _next_names(self) -> list[str] | None:
        with self._lock:
            if self._issued >= self.limit:
                return None
            first = self._issued
            self._issued += self.batch
            self._inflight += 1
        return [f"{self.prefix}/{i}" for i in range(first, first + self.batch)]

    def _write(self, w: int) -> None:
        deadline = time.monotonic() + self.seconds
        turn = w
        while not self._stop.is_set() and time.monotonic() < deadline:
            via = self.via or self.cluster.running_ids()
            names = self._next_names() if via else None
            if names is None:  # wait for more(), or for a node to come back
                self._stop.wait(0.05)
                continue
            stub = self.cluster.stub(via[turn % len(via)])
            turn += 1
            specs = [pb.NameSpec(name=n, kind="echo") for n in names]
            try:
                if self.batch == 1:
                    index = stub.Register(pb.RegisterRequest(spec=specs[0]), timeout=RPC_TIMEOUT_S)
                else:
                    index = stub.RegisterMany(
                        pb.RegisterManyRequest(specs=specs), timeout=RPC_TIMEOUT_S
                    )
            except grpc.RpcError as exc:
                with self._lock:
                    self.failed += len(names)
                    self.errors[describe(exc)[:120]] += 1
                    self._inflight -= 1
                self._stop.wait(0.05)  # back off: the cluster may be electing a leader
                continue
            with self._lock:
                self.acked.update(dict.fromkeys(names, index.index))
                self._inflight -= 1

    def wait_acked(self, count: int, timeout: float = 20.0) -> None:
        wait_for(f"{count} acknowledged registrations", lambda: len(self.acked) >= count, timeout)

    def go(self, count: int, timeout: float = 20.0) -> None:
        """Send more names until ``count`` more were acknowledged (calls may fail while
        the cluster recovers: those names are not retried, new ones are sent)."""
        target = len(self.acked) + count

        def reached() -> bool:
            with self._lock:
                if len(self.acked) >= target:
                    return True
                if self._issued >= self.limit and not self._inflight:
                    self.limit += min(count, target - len(self.acked))
            return False

        wait_for(f"{count} more acknowledged registrations", reached, timeout)

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until every name up to ``limit`` was sent and answered."""

        def idle() -> bool:
            with self._lock:
                return self._issued >= self.limit and not self._inflight

        wait_for(f"the storm's {self.limit} names sent and answered", idle, timeout)

    def stop(self) -> Storm:
        self._stop.set()
        for t in self._threads:
            t.join(RPC_TIMEOUT_S + 5.0)
            assert not t.is_alive(), "a storm writer did not stop"
        return self

    @property
    def top_token(self) -> int:
        return max(self.acked.values(), default=0)


def owners(c: LocalCluster, via: str, prefix: str) -> dict[str, tuple[str, int]]:
    """name → (owner, token) of every name under ``prefix``, as ``via`` sees it."""
    reply = c.stub(via).List(pb.ListRequest(prefix=prefix, limit=1 << 30), timeout=5.0)
    assert not reply.truncated
    return {loc.name: (loc.node, loc.token) for loc in reply.locations}


def wait_whole(c: LocalCluster, timeout: float = RECOVERY_S) -> str:
    """``wait_ready``, failing at once (with the node's log) if a node process exits:
    a node that refuses to start after a power loss is a failure, not a slow start."""

    def probe() -> str | None:
        crashed = c.crashed()
        assert not crashed, f"node(s) refused to start or died: {crashed}\n{c.log_tails(30)}"
        try:
            return c.wait_ready(0.5)
        except Timeout:
            return None

    return wait_for("every node up, one leader", probe, timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    acked: int
    lost: int
    failed: int
    """Names whose call failed (unknown whether they exist)."""
    ready_s: float
    """From the restart until every node was up with one leader, seconds."""

    def __str__(self) -> str:
        return (
            f"acknowledged {self.acked}, lost {self.lost}, unacknowledged {self.failed}; "
            f"whole again {self.ready_s:.1f} s after the restart"
        )


def check_survived(
    c: LocalCluster,
    storm: Storm,
    *,
    restarted: set[str],
    seen: int,
    before: dict[str, tuple[str, int]] | None = None,
    restarted_at: float | None = None,
) -> Outcome:
    """After a power loss of ``restarted`` and their restart: no node refused to start,
    the cluster is whole, every acknowledged name is listed on every node, and tokens kept
    rising. ``before`` is name → (owner, token) listed just before the loss (default: the
    tokens the storm's writes returned); ``seen`` the largest token seen before it. A
    name whose token changed has one above ``seen``; a name owned by a restarted node
    (any name, when every node lost power) has a new one; a name registered now gets a
    token above ``seen``. ``restarted_at`` (``time.monotonic()``; default: now) is when
    the restart began, for the recovery time reported."""
    started = time.monotonic() if restarted_at is None else restarted_at
    wait_whole(c)
    ready_s = time.monotonic() - started
    acked = storm.acked
    known = {name: ("", token) for name, token in acked.items()} | (before or {})
    everyone = restarted == set(c.ids)

    def all_listed() -> dict[str, dict[str, tuple[str, int]]] | None:
        views = {n: owners(c, n, storm.prefix) for n in c.running_ids()}
        return views if all(acked.keys() <= v.keys() for v in views.values()) else None

    try:
        wait_for("every acknowledged name on every node", all_listed, 10.0)
    except AssertionError:
        views = {n: owners(c, n, storm.prefix) for n in c.running_ids()}
        lost = {n: sorted(acked.keys() - v.keys()) for n, v in views.items()}
        counts = {n: len(names) for n, names in lost.items()}
        examples = {n: names[:5] for n, names in lost.items()}
        raise AssertionError(
            f"acknowledged registrations lost: {counts} of {len(acked)} (e.g. {examples})"
        ) from None

    def stale_tokens() -> list[tuple[str, str, int]]:
        bad = []
        for node_id in c.running_ids():
            for name, (_, token) in owners(c, node_id, storm.prefix).items():
                owner, old = known.get(name, ("", -1))
                moved = everyone or owner in restarted
                if (token != old or moved) and token <= seen:
                    bad.append((node_id, name, token))
        return bad

    try:
        wait_for("tokens above every token seen before the loss", lambda: not stale_tokens(), 10)
    except AssertionError:
        bad = stale_tokens()
        raise AssertionError(f"{len(bad)} tokens not above {seen}, e.g. {bad[:5]}") from None

    again = c.stub(c.running_ids()[0]).Register(
        pb.RegisterRequest(spec=pb.NameSpec(name=f"{storm.prefix}-again", kind="echo")),
        timeout=5.0,
    )
    assert again.index > seen, f"a registration after the loss got token {again.index} <= {seen}"
    return Outcome(acked=len(acked), lost=0, failed=storm.failed, ready_s=ready_s)
