"""Stopping nodes: a full-cluster restart keeps every registration (G3), and SIGTERM of an
owner hands its worker off with state (a rolling restart loses no count)."""

from __future__ import annotations

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until, wait_for

GRACEFUL_EXIT_S = 15.0


def listing(c: LocalCluster, via: str) -> list[tuple[str, str]]:
    """(name, kind) of every registered name, as ``via`` sees it."""
    reply = c.stub(via).List(pb.ListRequest(), timeout=RPC_TIMEOUT_S)
    assert not reply.truncated
    return [(loc.name, loc.kind) for loc in reply.locations]


def test_full_cluster_restart_keeps_every_registration(cluster: LocalCluster) -> None:
    stub = cluster.stub("n2")  # a follower or the leader: writes are forwarded either way
    args = {
        "dur/counter": ("counter", b""),
        "dur/echo": ("echo", b"hello"),
        "dur/probe": ("probe", b"\x00\xffbinary args\n"),
    }
    for name, (kind, arg) in args.items():
        stub.Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=name, kind=kind, args=arg)), timeout=5
        )
    batch = {f"dur/batch/{i}": f"arg {i}".encode() for i in range(6)}
    stub.RegisterMany(
        pb.RegisterManyRequest(
            specs=[pb.NameSpec(name=n, kind="probe", args=a) for n, a in batch.items()]
        ),
        timeout=5,
    )
    args.update({n: ("probe", a) for n, a in batch.items()})
    for name in ("dur/echo", "dur/batch/0"):
        stub.Join(pb.GroupRequest(group="dur/group", name=name), timeout=5)
    stub.Unregister(pb.UnregisterRequest(name="dur/batch/5"), timeout=5)
    del args["dur/batch/5"]
    expected = sorted((name, kind) for name, (kind, _) in args.items())

    wait_for(
        "every node to apply the writes",
        lambda: all(listing(cluster, n) == expected for n in cluster.ids),
        timeout=10,
    )
    old_terms = {n: cluster.status(n).term for n in cluster.ids}

    codes = cluster.terminate_all()
    assert codes == {n: 0 for n in cluster.ids}, f"SIGTERM should exit 0: {codes}"
    for node_id in cluster.ids:
        cluster.restart(node_id)
    leader = cluster.wait_ready(timeout=30)

    assert leader in cluster.ids
    for node_id in cluster.ids:
        status = cluster.status(node_id)
        assert status.term > max(old_terms.values()), "a new leader is elected in a new term"
        assert listing(cluster, node_id) == expected
        members = cluster.stub(node_id).Members(
            pb.MembersRequest(group="dur/group"), timeout=RPC_TIMEOUT_S
        )
        assert list(members.names) == ["dur/batch/0", "dur/echo"]
    # Names run again, with the args they were registered with.
    for name, (kind, arg) in args.items():
        if kind == "probe":
            assert call_until(cluster, "n1", name, b"args", timeout=10).payload == arg
    assert call_until(cluster, "n3", "dur/echo", b"ping", timeout=10).payload == b"ping"
    assert call_until(cluster, "n3", "dur/counter", b"incr", timeout=10).payload == b"1"


def test_sigterm_of_owner_hands_off_the_count(cluster: LocalCluster) -> None:
    name = "graceful/counter"
    cluster.stub("n1").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="counter")), timeout=5
    )
    call_until(cluster, "n1", name, b"get", timeout=5)
    for i in range(1, 6):
        reply = cluster.stub(cluster.ids[i % 3]).Call(
            pb.CallRequest(name=name, payload=b"incr"), timeout=RPC_TIMEOUT_S
        )
        assert reply.payload == str(i).encode()
    owner, token = cluster.owner(name)
    other = next(n for n in cluster.ids if n != owner)

    code = cluster.terminate(owner, timeout=GRACEFUL_EXIT_S)
    assert code == 0, f"SIGTERM must exit 0 within {GRACEFUL_EXIT_S} s (got {code})"

    reply = call_until(cluster, other, name, b"incr", timeout=15)
    assert reply.payload == b"6", "the count must survive a graceful stop of its owner"
    assert reply.node != owner and reply.token > token
