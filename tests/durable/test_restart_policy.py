"""Restart policies with real processes: ``permanent`` restarts after a crash and after
``ctx.stop()``; ``transient`` only after a crash; ``temporary`` never, and its name is
unregistered; ``ctx.stop(unregister=True)`` unregisters; ``max_restarts`` bounds crashes.
The policy is given through the wire, the CLI (``--restart``) and the SDK."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from registry.cli import main
from registry.client import SyncClient
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until, rpc_error, wait_for
from tests.durable.conftest import WORKER_MODULES


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        tmp_path_factory.mktemp("policy"), 3, preset="local", worker_modules=WORKER_MODULES
    )
    try:
        c.start(timeout=30.0)
        yield c
        assert not c.crashed(), f"node process(es) exited on their own\n{c.log_tails()}"
    finally:
        c.close()


def start(c: LocalCluster, name: str, **policy: object) -> str:
    """Register ``name`` with ``policy`` and return its node once it answers."""
    spec = pb.NameSpec(name=name, kind="policy-probe", **policy)  # type: ignore[arg-type]
    c.stub(c.ids[0]).Register(pb.RegisterRequest(spec=spec), timeout=5)
    return call_until(c, c.ids[0], name, b"get", timeout=10).node


def call(c: LocalCluster, node: str, name: str, payload: bytes) -> bytes:
    reply = c.stub(node).Call(pb.CallRequest(name=name, payload=payload), timeout=RPC_TIMEOUT_S)
    return bytes(reply.payload)


def crash(c: LocalCluster, node: str, name: str) -> grpc.RpcError:
    error = rpc_error(lambda: call(c, node, name, b"crash"))
    assert "asked to crash" in (error.details() or ""), error.details()
    return error


def unregistered(c: LocalCluster, name: str) -> bool:
    try:
        c.stub(c.ids[0]).WhereIs(pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as exc:
        return exc.code() is grpc.StatusCode.NOT_FOUND
    return False


def test_permanent_restarts_after_a_crash_and_after_stop(cluster: LocalCluster) -> None:
    name = "policy/permanent"
    node = start(cluster, name)  # no policy given: the default, permanent
    crash(cluster, node, name)
    assert call_until(cluster, node, name, b"get", 10).payload == b"2:restart"
    assert call(cluster, node, name, b"stop") == b"2:restart"
    assert call_until(cluster, node, name, b"get", 10).payload == b"3:restart"


def test_transient_restarts_after_a_crash_but_not_after_stop(cluster: LocalCluster) -> None:
    name = "policy/transient"
    node = start(cluster, name, restart="transient")
    crash(cluster, node, name)
    assert call_until(cluster, node, name, b"get", 10).payload == b"2:restart"
    call(cluster, node, name, b"stop")
    error = rpc_error(lambda: call(cluster, node, name, b"get"))
    assert "a transient name is not restarted" in (error.details() or ""), error.details()
    assert not unregistered(cluster, name), "a transient name stays registered"


def test_temporary_is_unregistered_when_it_crashes(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "policy/temporary"
    addr = cluster.nodes[cluster.ids[0]].grpc_addr
    argv = ["register", name, "--kind", "policy-probe", "--restart", "temporary"]
    assert main([*argv, "--addr", addr, "--json"]) == 0, capsys.readouterr()
    node = call_until(cluster, cluster.ids[0], name, b"get", timeout=10).node
    crash(cluster, node, name)
    wait_for(f"{name} to be unregistered", lambda: unregistered(cluster, name) or None, 15)


def test_stop_with_unregister_unregisters_the_name(cluster: LocalCluster) -> None:
    name = "policy/quits"
    node = start(cluster, name)
    assert call(cluster, node, name, b"quit") == b"1:new"
    wait_for(f"{name} to be unregistered", lambda: unregistered(cluster, name) or None, 15)


def test_max_restarts_zero_fails_on_the_first_crash(cluster: LocalCluster) -> None:
    name = "policy/fragile"
    with SyncClient([cluster.nodes[n].grpc_addr for n in cluster.ids], timeout=10.0) as client:
        client.register(name, "policy-probe", max_restarts=0, restart_window=60.0)
    node = call_until(cluster, cluster.ids[0], name, b"get", timeout=10).node
    crash(cluster, node, name)
    error = rpc_error(lambda: call(cluster, node, name, b"get"))
    assert "restarted too often" in (error.details() or ""), error.details()


def test_a_bad_restart_policy_is_refused(cluster: LocalCluster) -> None:
    spec = pb.NameSpec(name="policy/bad", kind="policy-probe", restart="sometimes")
    error = rpc_error(lambda: cluster.stub(cluster.ids[0]).Register(pb.RegisterRequest(spec=spec)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "permanent" in (error.details() or "")
    assert unregistered(cluster, "policy/bad")
