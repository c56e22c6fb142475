"""G7 with real processes: every RPC given bad input answers the precise status with a
message a person understands, and changes nothing (every node's listing and groups are
the same before and after, and no node process dies).

Non-UTF-8 names: protobuf refuses them on the client (a ``str`` field cannot hold a lone
surrogate — ``test_protobuf_refuses_non_utf8_names_client_side``), so the only way one
reaches a node is as raw bytes on the wire; those requests are hand-built here and sent
through a channel method without a serializer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, rpc_error, wait_for

LIMIT = 4 << 20  # the default max_payload_bytes
OVER = b"x" * (LIMIT + 1)
EXISTING = "bad/existing"
GROUP = "bad/group"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class Case:
    id: str
    send: Callable[[grpc.Channel], object]
    """Makes the request over a channel to the node."""
    code: grpc.StatusCode
    says: str
    """A fragment the status message must contain."""


def spec(name: str = "bad/new", kind: str = "echo", **kw: Any) -> pb.NameSpec:
    return pb.NameSpec(name=name, kind=kind, **kw)


def _call(method: str, request: Any) -> Callable[[grpc.Channel], object]:
    def send(channel: grpc.Channel) -> object:
        stub = registry_pb2_grpc.RegistryStub(channel)
        return getattr(stub, method)(request, timeout=RPC_TIMEOUT_S)

    return send


def register(s: pb.NameSpec) -> Callable[[grpc.Channel], object]:
    return _call("Register", pb.RegisterRequest(spec=s))


def register_many(*specs: pb.NameSpec) -> Callable[[grpc.Channel], object]:
    return _call("RegisterMany", pb.RegisterManyRequest(specs=list(specs)))


def by_name(method: str, request_type: Any, field: str = "name") -> Iterator[Case]:
    """The name-shaped checks every RPC taking ``field`` must make."""
    cases = [
        ("empty", "", INVALID, f"{field} must not be empty"),
        ("256-bytes", "n" * 256, INVALID, f"{field} is longer than 255 bytes"),
        ("256-bytes-in-128-chars", "é" * 128, INVALID, f"{field} is longer than 255 bytes"),
        ("control-char", "bad\x00name", INVALID, f"{field} contains control characters"),
    ]
    for label, value, code, says in cases:
        kw = {field: value}
        if request_type is pb.GroupRequest and field == "group":
            kw["name"] = EXISTING
        yield Case(f"{method}-{field}-{label}", _call(method, request_type(**kw)), code, says)


CASES: list[Case] = [
    # Register / RegisterMany
    *by_name("WhereIs", pb.WhereIsRequest),
    Case("Register-empty-name", register(spec(name="")), INVALID, "name must not be empty"),
    Case("Register-long-name", register(spec(name="n" * 256)), INVALID, "longer than 255"),
    Case("Register-empty-kind", register(spec(kind="")), INVALID, "kind must not be empty"),
    Case("Register-unknown-kind", register(spec(kind="nope")), PRECONDITION, "kind 'nope'"),
    Case("Register-duplicate", register(spec(name=EXISTING)), EXISTS, "already registered"),
    Case("Register-args-over-limit", register(spec(args=OVER)), EXHAUSTED, "over the"),
    Case(
        "Register-unknown-role",
        register(spec(roles=["gpu"])),
        PRECONDITION,
        "with roles ['gpu']",
    ),
    Case(
        "Register-empty-priority-tier",
        register(spec(priority=[pb.Tier(nodes=[])])),
        INVALID,
        "priority tiers must not be empty",
    ),
    Case("RegisterMany-empty", register_many(), INVALID, "no names to register"),
    Case(
        "RegisterMany-twice-in-batch",
        register_many(spec("bad/a"), spec("bad/a")),
        INVALID,
        "appears twice",
    ),
    Case(
        # Batches are atomic: bad/b must not be registered either.
        "RegisterMany-one-duplicate",
        register_many(spec("bad/b"), spec(EXISTING)),
        EXISTS,
        "already registered",
    ),
    Case(
        "RegisterMany-one-bad-name",
        register_many(spec("bad/c"), spec("")),
        INVALID,
        "name must not be empty",
    ),
    Case(
        "RegisterMany-args-over-limit",
        register_many(spec("bad/d"), spec("bad/e", args=OVER)),
        EXHAUSTED,
        "over the",
    ),
    # Unregister
    *by_name("Unregister", pb.UnregisterRequest),
    Case(
        "Unregister-unknown",
        _call("Unregister", pb.UnregisterRequest(name="bad/nope")),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    # WhereIs
    Case(
        "WhereIs-unknown",
        _call("WhereIs", pb.WhereIsRequest(name="bad/nope")),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    Case(
        "WhereIs-consistent-unknown",
        _call("WhereIs", pb.WhereIsRequest(name="bad/nope", consistent=True)),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    # Call / Cast
    *by_name("Call", pb.CallRequest),
    Case(
        "Call-unknown",
        _call("Call", pb.CallRequest(name="bad/nope", payload=b"x")),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    Case(
        "Call-payload-over-limit",
        _call("Call", pb.CallRequest(name=EXISTING, payload=OVER)),
        EXHAUSTED,
        f"{LIMIT + 1} bytes is over the {LIMIT}-byte limit",
    ),
    *by_name("Cast", pb.CastRequest),
    Case(
        "Cast-unknown",
        _call("Cast", pb.CastRequest(name="bad/nope", payload=b"incr")),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    Case(
        "Cast-payload-over-limit",
        _call("Cast", pb.CastRequest(name=EXISTING, payload=OVER)),
        EXHAUSTED,
        "-byte limit",
    ),
    # Join / Leave
    *by_name("Join", pb.GroupRequest, "group"),
    Case(
        "Join-empty-name",
        _call("Join", pb.GroupRequest(group=GROUP, name="")),
        INVALID,
        "name must not be empty",
    ),
    Case(
        "Join-unknown-name",
        _call("Join", pb.GroupRequest(group=GROUP, name="bad/nope")),
        NOT_FOUND,
        "'bad/nope' is not registered",
    ),
    Case(
        "Join-already-member",
        _call("Join", pb.GroupRequest(group=GROUP, name=EXISTING)),
        EXISTS,
        f"already in group {GROUP!r}",
    ),
    *by_name("Leave", pb.GroupRequest, "group"),
    Case(
        "Leave-unknown-group",
        _call("Leave", pb.GroupRequest(group="bad/nogroup", name=EXISTING)),
        NOT_FOUND,
        "no group 'bad/nogroup'",
    ),
    Case(
        "Leave-not-a-member",
        _call("Leave", pb.GroupRequest(group=GROUP, name="bad/echo")),
        NOT_FOUND,
        f"'bad/echo' is not in group {GROUP!r}",
    ),
    # Members / Publish / MultiCall
    *by_name("Members", pb.MembersRequest, "group"),
    Case(
        "Members-unknown-group",
        _call("Members", pb.MembersRequest(group="bad/nogroup")),
        NOT_FOUND,
        "no group 'bad/nogroup'",
    ),
    Case(
        "Publish-unknown-group",
        _call("Publish", pb.PublishRequest(group="bad/nogroup", payload=b"incr")),
        NOT_FOUND,
        "no group 'bad/nogroup'",
    ),
    Case(
        "Publish-empty-group",
        _call("Publish", pb.PublishRequest(group="", payload=b"incr")),
        INVALID,
        "group must not be empty",
    ),
    Case(
        "Publish-payload-over-limit",
        _call("Publish", pb.PublishRequest(group=GROUP, payload=OVER)),
        EXHAUSTED,
        "-byte limit",
    ),
    Case(
        "MultiCall-unknown-group",
        _call("MultiCall", pb.MultiCallRequest(group="bad/nogroup", payload=b"get")),
        NOT_FOUND,
        "no group 'bad/nogroup'",
    ),
    Case(
        "MultiCall-payload-over-limit",
        _call("MultiCall", pb.MultiCallRequest(group=GROUP, payload=OVER)),
        EXHAUSTED,
        "-byte limit",
    ),
    Case(
        "MultiCall-negative-timeout",
        _call("MultiCall", pb.MultiCallRequest(group=GROUP, payload=b"get", timeout_s=-1)),
        INVALID,
        "timeout",
    ),
    Case(
        "MultiCall-nan-timeout",
        _call(
            "MultiCall",
            pb.MultiCallRequest(group=GROUP, payload=b"get", timeout_s=float("nan")),
        ),
        INVALID,
        "timeout",
    ),
]


def _raw(method: str, *fields: tuple[int, bytes]) -> Callable[[grpc.Channel], object]:
    """A request encoded by hand: each (field number, bytes) as a length-delimited field,
    so a string field can carry bytes that are not UTF-8."""
    body = b""
    for number, value in fields:
        assert len(value) < 128
        body += bytes([number << 3 | 2, len(value)]) + value
    return _raw_body(method, body)


def _raw_body(method: str, body: bytes) -> Callable[[grpc.Channel], object]:
    def send(channel: grpc.Channel) -> object:
        if method == "Watch":
            stream: grpc.UnaryStreamMultiCallable[bytes, pb.WatchEvents] = channel.unary_stream(
                "/registry.v1.Registry/Watch",
                request_serializer=None,
                response_deserializer=pb.WatchEvents.FromString,
            )
            return list(stream(body, timeout=RPC_TIMEOUT_S))
        unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/registry.v1.Registry/{method}", request_serializer=None, response_deserializer=None
        )
        return unary(body, timeout=RPC_TIMEOUT_S)

    return send


# Protobuf rejects these while decoding, before any servicer code runs: the node answers
# INVALID_ARGUMENT only with ``registry.node.status.MalformedRequests`` installed on its
# gRPC server (otherwise gRPC answers UNKNOWN and logs a DecodeError traceback).
NOT_UTF8 = b"bad/\xff\xfe"
RAW_CASES = [
    Case("raw-WhereIs", _raw("WhereIs", (1, NOT_UTF8)), INVALID, "UTF-8"),
    Case(
        "raw-Register",
        _raw("Register", (1, bytes([0x0A, len(NOT_UTF8)]) + NOT_UTF8 + b"\x12\x04echo")),
        INVALID,
        "UTF-8",
    ),
    Case("raw-Unregister", _raw("Unregister", (1, NOT_UTF8)), INVALID, "UTF-8"),
    Case("raw-Call", _raw("Call", (1, NOT_UTF8), (2, b"incr")), INVALID, "UTF-8"),
    Case("raw-Cast", _raw("Cast", (1, NOT_UTF8), (2, b"incr")), INVALID, "UTF-8"),
    Case("raw-Join-name", _raw("Join", (1, b"bad/g"), (2, NOT_UTF8)), INVALID, "UTF-8"),
    Case("raw-Join-group", _raw("Join", (1, NOT_UTF8), (2, b"bad/x")), INVALID, "UTF-8"),
    Case("raw-Leave", _raw("Leave", (1, NOT_UTF8), (2, b"bad/x")), INVALID, "UTF-8"),
    Case("raw-Members", _raw("Members", (1, NOT_UTF8)), INVALID, "UTF-8"),
    Case("raw-Publish", _raw("Publish", (1, NOT_UTF8), (2, b"incr")), INVALID, "UTF-8"),
    Case("raw-MultiCall", _raw("MultiCall", (1, NOT_UTF8), (2, b"get")), INVALID, "UTF-8"),
    Case("raw-List", _raw("List", (1, NOT_UTF8)), INVALID, "UTF-8"),
    Case("raw-Watch", _raw("Watch", (1, NOT_UTF8)), INVALID, "UTF-8"),
    # Not protobuf at all: a truncated length-delimited field.
    Case("raw-truncated", _raw_body("WhereIs", b"\x0a\x7fshort"), INVALID, "WhereIsRequest"),
]


Snapshot = dict[str, tuple[list[tuple[str, str, str, int]], list[str], int]]


def snapshot(c: LocalCluster) -> Snapshot:
    """What every node serves: its listing, the group's members, and its name count."""
    out: Snapshot = {}
    for node_id in c.ids:
        stub = c.stub(node_id)
        listed = stub.List(pb.ListRequest(), timeout=RPC_TIMEOUT_S).locations
        members = stub.Members(pb.MembersRequest(group=GROUP), timeout=RPC_TIMEOUT_S).names
        status = stub.Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S)
        out[node_id] = (
            [(loc.name, loc.kind, loc.node, loc.token) for loc in listed],
            list(members),
            status.names,
        )
    return out


@pytest.fixture(scope="module")
def prepared(calm_cluster: LocalCluster) -> LocalCluster:
    stub = calm_cluster.stub("n1")
    stub.Register(pb.RegisterRequest(spec=spec(EXISTING, "counter")), timeout=5)
    stub.Register(pb.RegisterRequest(spec=spec("bad/echo", "echo")), timeout=5)
    stub.Join(pb.GroupRequest(group=GROUP, name=EXISTING), timeout=5)
    return calm_cluster


def settled(c: LocalCluster) -> Snapshot:
    """A snapshot taken once every node has applied the same state."""

    def probe() -> Snapshot | None:
        snap = snapshot(c)
        views = list(snap.values())
        return snap if all(v == views[0] for v in views) else None

    return wait_for("every node to serve the same state", probe, timeout=10)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("via", ["leader", "follower"])
def test_bad_input_precise_status_and_nothing_changes(
    prepared: LocalCluster, case: Case, via: str
) -> None:
    check(prepared, case, via)


@pytest.mark.parametrize("case", RAW_CASES, ids=lambda case: case.id)
def test_undecodable_request_is_invalid_argument_and_changes_nothing(
    prepared: LocalCluster, case: Case
) -> None:
    """Decoding happens before any routing, so one node is enough."""
    check(prepared, case, "follower")


def check(c: LocalCluster, case: Case, via: str) -> None:
    leader = c.wait_ready(timeout=10)
    node_id = leader if via == "leader" else next(n for n in c.ids if n != leader)
    before = settled(c)

    err = rpc_error(lambda: case.send(c.channel(node_id)))

    assert err.code() is case.code, f"{case.id}: {err.code().name}: {err.details()}"
    details = err.details() or ""
    assert case.says in details, f"{case.id}: message {details!r} lacks {case.says!r}"
    assert "Traceback" not in details and "internal error" not in details
    assert snapshot(c) == before, f"{case.id} changed the registry"
    assert not c.crashed()


def test_protobuf_refuses_non_utf8_names_client_side() -> None:
    """A lone surrogate cannot even be put on the wire by the protobuf runtime, so a node
    can only ever receive non-UTF-8 names as raw bytes (the ``raw-*`` cases)."""
    with pytest.raises((UnicodeEncodeError, ValueError)):
        pb.WhereIsRequest(name="bad/\ud800").SerializeToString()
