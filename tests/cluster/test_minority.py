"""G6 with real processes: a node left alone keeps answering reads, status and metrics,
refuses writes with UNAVAILABLE saying why, and recovers when the others return."""

from __future__ import annotations

import json

import grpc
import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until, rpc_error, wait_for

NO_QUORUM = "no quorum: 1 of 3 voters reachable"
GROUP = "minority/group"


@pytest.mark.parametrize("survivor_was", ["leader", "follower"])
def test_minority_node_stays_observable_and_refuses_writes(
    cluster: LocalCluster, survivor_was: str
) -> None:
    leader = cluster.wait_ready()
    survivor = leader if survivor_was == "leader" else next(n for n in cluster.ids if n != leader)
    others = [n for n in cluster.ids if n != survivor]
    stub = cluster.stub(survivor)
    names = [f"minority/{i}" for i in range(4)]
    stub.RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="echo") for n in names]),
        timeout=5,
    )
    wait_for(
        f"{survivor} to apply the registrations",
        lambda: stub.Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S).names == len(names),
        timeout=5,
    )
    for node_id in others:
        cluster.kill(node_id)

    # Writes: refused with UNAVAILABLE and the reason, once the survivor knows it is alone.
    # Before that it may still forward to its dead leader (UNAVAILABLE), or, if it led,
    # append the write and wait for a quorum that never comes (DEADLINE_EXCEEDED: the
    # outcome is unknown, and the entry may commit once the others return).
    attempts: dict[str, grpc.StatusCode] = {}

    def write_refused() -> grpc.RpcError | None:
        name = f"minority/try/{len(attempts)}"
        err = rpc_error(
            lambda: stub.Register(
                pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")),
                timeout=RPC_TIMEOUT_S,
            )
        )
        attempts[name] = err.code()
        return err if NO_QUORUM in (err.details() or "") else None

    err = wait_for("the survivor to refuse writes for want of a quorum", write_refused, 15)
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert set(attempts.values()) <= {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }, attempts
    for write in (
        lambda: stub.Unregister(pb.UnregisterRequest(name=names[0]), timeout=RPC_TIMEOUT_S),
        lambda: stub.Join(pb.GroupRequest(group=GROUP, name=names[0]), timeout=RPC_TIMEOUT_S),
        lambda: stub.RegisterMany(
            pb.RegisterManyRequest(specs=[pb.NameSpec(name="minority/x", kind="echo")]),
            timeout=RPC_TIMEOUT_S,
        ),
    ):
        other = rpc_error(write)
        assert other.code() is grpc.StatusCode.UNAVAILABLE
        assert NO_QUORUM in (other.details() or ""), other.details()

    # Reads keep working: cluster status, and lookups marked stale once the lease is gone.
    status = stub.Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S)
    assert status.node == survivor and not status.quorum and status.names == len(names)
    where = wait_for(
        "WhereIs to be marked stale",
        lambda: (
            r
            if (
                r := stub.WhereIs(pb.WhereIsRequest(name=names[1]), timeout=RPC_TIMEOUT_S)
            ).location.stale
            else None
        ),
        timeout=5,
    )
    assert where.location.name == names[1] and where.location.token > 0
    listed = stub.List(pb.ListRequest(prefix="minority/"), timeout=RPC_TIMEOUT_S)
    assert sorted(loc.name for loc in listed.locations) == names
    assert all(loc.stale for loc in listed.locations)
    consistent = rpc_error(
        lambda: stub.WhereIs(
            pb.WhereIsRequest(name=names[1], consistent=True), timeout=RPC_TIMEOUT_S + 10
        )
    )
    assert consistent.code() is grpc.StatusCode.UNAVAILABLE

    # HTTP: status JSON and metrics still served; not ready.
    body = cluster.http_json(survivor, "/status")
    assert body["node"] == survivor and body["quorum"] is False and body["names"] == len(names)
    code, ctype, metrics = cluster.http_get(survivor, "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert b"registry_raft_term " in metrics and b"registry_quorum 0.0" in metrics
    code, _, why = cluster.http_get(survivor, "/readyz")
    assert code == 503, why
    assert NO_QUORUM in why.decode(), why
    code, _, _ = cluster.http_get(survivor, "/healthz")
    assert code == 200

    # The others return: the cluster re-forms and writes work again.
    for node_id in others:
        cluster.restart(node_id)
    cluster.wait_ready(timeout=30)
    stub.Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="minority/after", kind="echo")), timeout=5
    )
    # Acknowledged through the survivor, so visible there at once (read your writes), and a
    # call through it never answers NOT_FOUND, even while the holder still lags (the bug
    # once seen here; tests/cluster/test_lagging_holder.py reproduces it).
    where = stub.WhereIs(pb.WhereIsRequest(name="minority/after"), timeout=RPC_TIMEOUT_S)
    assert where.location.name == "minority/after" or where.waiting
    assert call_until(cluster, survivor, "minority/after", b"hi", timeout=5).payload == b"hi"
    assert json.loads(cluster.http_get(survivor, "/status")[2])["quorum"] is True
    assert cluster.http_get(survivor, "/readyz")[0] == 200

    # UNAVAILABLE meant "not done": none of the refused writes took effect.
    listed = stub.List(pb.ListRequest(prefix="minority/"), timeout=RPC_TIMEOUT_S)
    registered = {loc.name for loc in listed.locations}
    refused = {n for n, code in attempts.items() if code is grpc.StatusCode.UNAVAILABLE}
    assert not refused & registered, f"refused writes were applied: {refused & registered}"
    assert set(names) <= registered and "minority/x" not in registered
    missing = rpc_error(lambda: stub.Members(pb.MembersRequest(group=GROUP), timeout=2))
    assert missing.code() is grpc.StatusCode.NOT_FOUND
