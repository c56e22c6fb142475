"""A busy host is not a failure; a crashed host is restarted and nothing else moves.

- CPU-bound: one worker spins in pure Python for seconds. Its node keeps its lease
  (``/readyz`` 200), no election happens (every node's term unchanged), no name moves or
  restarts (owners and tokens unchanged), names on the node's other host answer, and a
  call to the busy worker ends with DEADLINE_EXCEEDED at its deadline.
- ``kill -9`` of one host: the control process restarts it; exactly its names start again,
  with reason ``restart`` and their tokens; every other name keeps its one activation.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc

from registry.node.hosts import host_index
from registry.testing.local_cluster import LocalCluster, call_until, wait_for
from registry.v1 import registry_pb2 as pb
from tests.hosts.support import Ledger, ledger, local_cluster

__all__ = ["ledger"]

HOSTS = 2
NAMES = [f"busy-{i:02d}" for i in range(24)]
SPIN_S = 6.0


def _register_all(c: LocalCluster) -> dict[str, tuple[str, int]]:
    c.stub("n1").RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="blocker") for n in NAMES]),
        timeout=10,
    )
    placed = {n: c.owner(n) for n in NAMES}
    for name, (node, _) in placed.items():
        call_until(c, node, name, b"reason", 10.0, lambda r: r.payload == b"new")
    return placed


def _placement(c: LocalCluster) -> dict[str, tuple[str, int]]:
    return {n: c.owner(n) for n in NAMES}


def _on(placed: dict[str, tuple[str, int]], node: str, host: int) -> list[str]:
    return [n for n, (o, _) in placed.items() if o == node and host_index(n, HOSTS) == host]


def test_a_cpu_bound_worker_moves_nothing(tmp_path: Path, ledger: Ledger) -> None:
    with local_cluster(tmp_path, workers=HOSTS, preset="lan") as c:
        placed = _register_all(c)
        # A busy name whose node also runs names on its other host.
        spinner, node, neighbour = next(
            (n, o, m)
            for n, (o, _) in placed.items()
            for m in _on(placed, o, 1 - host_index(n, HOSTS))
        )
        terms = {n: c.status(n).term for n in c.ids}
        c.stub(node).Cast(pb.CastRequest(name=spinner, payload=f"spin {SPIN_S}".encode()))
        wait_for(
            "the spin",
            lambda: (
                ledger.rows("SELECT t FROM rows WHERE name = ? AND what = 'spin'", spinner) or None
            ),
            10.0,
        )
        t_busy_end = time.monotonic() + SPIN_S - 1.0
        with_deadline = 0.5
        t0 = time.monotonic()
        try:
            c.stub(node).Call(pb.CallRequest(name=spinner, payload=b"token"), timeout=with_deadline)
            raise AssertionError("the busy worker answered while spinning")
        except grpc.RpcError as exc:
            waited = time.monotonic() - t0
            assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED, exc
            assert with_deadline - 0.05 <= waited <= with_deadline + 1.0, waited
        checks = 0
        while time.monotonic() < t_busy_end:
            code, _, body = c.http_get(node, "/readyz")
            assert code == 200, f"{node} not ready while one worker spins: {body!r}"
            now_terms = {n: c.status(n).term for n in c.ids}
            assert now_terms == terms, f"an election happened: {terms} -> {now_terms}"
            reply = c.stub(node).Call(pb.CallRequest(name=neighbour, payload=b"reason"), timeout=2)
            assert reply.payload == b"new"
            checks += 1
        assert checks >= 3, "the checks did not run during the busy period"
        assert _placement(c) == placed, "a name moved or restarted while a worker spun"
        call_until(c, node, spinner, b"reason", 20.0, lambda r: r.payload == b"new")
        starts = ledger.rows("SELECT name, COUNT(*) FROM rows WHERE what = 'start' GROUP BY name")
        assert {str(n): k for n, k in starts} == dict.fromkeys(NAMES, 1), "a name started twice"
        assert {n: c.status(n).term for n in c.ids} == terms


def test_kill_9_of_a_host_restarts_its_names_only(tmp_path: Path, ledger: Ledger) -> None:
    with local_cluster(tmp_path, workers=HOSTS) as c:
        placed = _register_all(c)
        node, host = next((o, h) for o in c.ids for h in range(HOSTS) if _on(placed, o, h))
        victims = _on(placed, node, host)
        before = c.http_json(node, "/status")["hosts"][host]
        assert before["activations"] == len(victims), before
        os.kill(int(before["pid"]), signal.SIGKILL)

        def restarted() -> dict[str, int] | None:
            now = c.http_json(node, "/status")["hosts"][host]
            return now if now["restarts"] == 1 and now["pid"] != before["pid"] else None

        after = wait_for(f"host {host} of {node} restarted", restarted, 20.0)
        for name in victims:
            call_until(c, node, name, b"reason", 10.0, lambda r: r.payload == b"restart")
        assert c.http_json(node, "/status")["hosts"][host]["activations"] == len(victims)
        assert after["id"] == host
        assert _placement(c) == placed, "a name moved, or its token changed"
        starts: dict[str, list[tuple[int, str]]] = {}
        for name in NAMES:
            starts[name] = [(t, r) for t, r, _ in ledger.starts(name)]
        for name, (_, token) in placed.items():
            expected = [(token, "new"), (token, "restart")] if name in victims else [(token, "new")]
            assert starts[name] == expected, (name, starts[name])
