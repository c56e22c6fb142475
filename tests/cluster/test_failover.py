"""G4/G2 with real processes: ``kill -9`` of an owner moves its name elsewhere, with a
higher fencing token and a fresh start (reason FAILOVER)."""

from __future__ import annotations

import re
import time

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until, wait_for

FAILOVER_BOUND_S = 30.0
"""10× the 3 s failover target (DESIGN §5): generous, because CI machines stall."""


def failover_starts(c: LocalCluster, node_id: str) -> float:
    _, _, body = c.http_get(node_id, "/metrics")
    match = re.search(
        rb'^registry_activations_started_total\{reason="failover"\} (\S+)$', body, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_kill_9_owner_name_runs_elsewhere_with_higher_token(cluster: LocalCluster) -> None:
    name = "failover/counter"
    cluster.stub("n1").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="counter")), timeout=5
    )
    first = call_until(cluster, "n1", name, b"incr", timeout=5)
    assert first.payload == b"1"
    for expected in (b"2", b"3"):
        assert (
            cluster.stub("n2")
            .Call(pb.CallRequest(name=name, payload=b"incr"), timeout=RPC_TIMEOUT_S)
            .payload
            == expected
        )
    owner, token = cluster.owner(name)
    assert (owner, token) == (first.node, first.token)
    survivors = [n for n in cluster.ids if n != owner]

    killed_at = time.monotonic()
    cluster.kill(owner)
    reply = call_until(
        cluster, survivors[0], name, b"incr", FAILOVER_BOUND_S, lambda r: r.node != owner
    )
    elapsed = time.monotonic() - killed_at

    assert reply.node in survivors
    assert reply.token > token, "the new activation must carry a higher fencing token (G2)"
    assert reply.payload == b"1", "a failover starts the counter afresh (no state survives)"
    assert elapsed < FAILOVER_BOUND_S
    # Every survivor's replica agrees on the new location and token.
    wait_for(
        f"WhereIs on {survivors} to show {reply.node}#{reply.token}",
        lambda: all(cluster.owner(name, via=n) == (reply.node, reply.token) for n in survivors),
        timeout=10,
    )
    assert failover_starts(cluster, reply.node) >= 1, "the start is counted as a FAILOVER"

    # The killed node comes back with its data directory and rejoins. It is the name's
    # ring owner again, so the name moves back to it by handoff (G5): a new activation
    # there, a higher token (G2), and the count handed over from the failover activation.
    cluster.restart(owner)
    cluster.wait_ready(timeout=30)
    back = call_until(cluster, owner, name, b"get", 15, lambda r: r.node == owner)
    assert back.token > reply.token, "the handoff back must carry a higher fencing token"
    assert back.payload == b"1", "the state came back with the handoff"
    after = call_until(cluster, owner, name, b"incr", timeout=15)
    assert (after.node, after.token, after.payload) == (owner, back.token, b"2")
