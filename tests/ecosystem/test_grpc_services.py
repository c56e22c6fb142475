"""The standard gRPC ecosystem against real node processes: ``grpc.health.v1`` through
the official health stub (status follows the member lease), server reflection through a
reflection client, and ``google.rpc.Status`` error details read with ``grpcio-status``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from registry.testing.local_cluster import LocalCluster, rpc_error, wait_for
from registry.v1 import registry_pb2 as pb

REGISTRY = "registry.v1.Registry"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _started(root: Path) -> LocalCluster:
    c = LocalCluster(root, 3, preset="local", worker_modules=("registry.examples",))
    try:
        c.start(timeout=30.0)
    except BaseException:
        logs = c.log_tails()
        c.close()
        raise AssertionError(f"the cluster did not come up:\n{logs}") from None
    return c


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = _started(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _health(c: LocalCluster, node: str) -> Any:  # the stubs' typing names no methods
    return health_pb2_grpc.HealthStub(c.channel(node))


def _check(c: LocalCluster, node: str, service: str = "") -> int:
    reply = _health(c, node).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = reply.status
    return status


def test_health_is_serving_while_the_node_holds_its_lease(cluster: LocalCluster) -> None:
    for node in cluster.ids:
        assert _check(cluster, node) == SERVING
        assert _check(cluster, node, REGISTRY) == SERVING
    unknown = rpc_error(lambda: _check(cluster, "n1", "no.such.Service"))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    watch = _health(cluster, "n1").Watch(
        health_pb2.HealthCheckRequest(service=REGISTRY), timeout=30
    )
    try:
        assert next(watch).status == SERVING
        # n1 alone holds no lease once the other two are gone: it must stop advertising.
        cluster.kill("n2")
        cluster.kill("n3")
        assert next(watch).status == NOT_SERVING
    finally:
        watch.cancel()
    assert _check(cluster, "n1") == NOT_SERVING
    # Back to whole: SERVING again, without a restart of n1.
    cluster.start_node("n2")
    wait_for("n1 serving again", lambda: _check(cluster, "n1") == SERVING or None, 30.0)


def _reflect(c: LocalCluster, request: reflection_pb2.ServerReflectionRequest) -> object:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(c.channel("n1"))
    return next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))


def _error_info(exc: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no status details in {exc}"
    assert status.message == exc.details()
    info = error_details_pb2.ErrorInfo()
    kinds = []
    for detail in status.details:
        kinds.append(detail.TypeName())
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
    return info, kinds


def test_reflection_lists_the_api_and_errors_carry_rich_details(cluster: LocalCluster) -> None:
    listed = _reflect(cluster, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}  # type: ignore[attr-defined]
    assert names == {REGISTRY, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    files = _reflect(
        cluster, reflection_pb2.ServerReflectionRequest(file_containing_symbol=REGISTRY)
    )
    methods = set()
    for raw in files.file_descriptor_response.file_descriptor_proto:  # type: ignore[attr-defined]
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for service in proto.service:
            methods |= {m.name for m in service.method}
    assert {"Register", "Call", "WhereIs", "Watch"} <= methods

    # A taken name, registered through a follower: NAME_TAKEN, naming the leader.
    leader = cluster.status("n1").leader
    follower = next(n for n in cluster.ids if n != leader)
    spec = pb.NameSpec(name="eco-taken", kind="counter")
    cluster.stub(leader).Register(pb.RegisterRequest(spec=spec), timeout=10)
    taken = rpc_error(
        lambda: cluster.stub(follower).Register(pb.RegisterRequest(spec=spec), timeout=10)
    )
    info, kinds = _error_info(taken)
    assert taken.code() is grpc.StatusCode.ALREADY_EXISTS
    assert (info.domain, info.reason) == ("registry.v1", "NAME_TAKEN")
    assert info.metadata["leader"] == leader
    assert info.metadata["leader_address"] == cluster.nodes[leader].grpc_addr
    assert "google.rpc.RetryInfo" not in kinds

    # A forwarded call that reaches a node not running the name: NOT_OWNER, the owner
    # named, with a RetryInfo (nothing ran).
    owner, _ = cluster.owner("eco-taken")
    other = next(n for n in cluster.ids if n != owner)
    moved = rpc_error(
        lambda: cluster.stub(other).Call(
            pb.CallRequest(name="eco-taken", payload=b"get"),
            metadata=(("registry-forwarded", "1"),),
            timeout=5,
        )
    )
    info, kinds = _error_info(moved)
    assert moved.code() is grpc.StatusCode.UNAVAILABLE
    assert info.reason == "NOT_OWNER"
    assert (info.metadata["owner"], info.metadata["owner_address"]) == (
        owner,
        cluster.nodes[owner].grpc_addr,
    )
    assert "google.rpc.RetryInfo" in kinds and "registry.v1.Redirect" in kinds
    # /metrics carries no *_created series (turned off: they doubled the series count).
    status, _, body = cluster.http_get(owner, "/metrics")
    assert status == 200 and b"registry_rpc_seconds_count" in body
    assert not [line for line in body.decode().splitlines() if "_created" in line]
    # The same call without the marker is forwarded to the owner and answered.
    reply = cluster.stub(other).Call(pb.CallRequest(name="eco-taken", payload=b"get"), timeout=5)
    assert reply.node == owner
