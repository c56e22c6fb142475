"""Hypothesis over every client RPC against a real node (issue 16).

Random field values and sizes at and around each limit (payload, log entry, fan-out,
name length) go to a one-node cluster with small limits. Properties:

- every request is answered OK or with a documented status (``DOCUMENTED``), never
  INTERNAL/UNKNOWN; a RESOURCE_EXHAUSTED always names its reason;
- a refused request changes nothing (the listing with kinds and groups is the same
  before and after);
- the node never logs a traceback.

Examples are bounded (``EXAMPLES``) so the module stays well under a minute.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from registry.core.state import MAX_NAME_BYTES
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, wait_for

PAYLOAD = 4096
ENTRY = 16384
FANOUT = 3 * PAYLOAD - 1  # the group's 3 members at the payload limit: one byte over
EXAMPLES = 150
DOCUMENTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,  # a worker raised (echo never does; counter on bad input)
    grpc.StatusCode.UNAVAILABLE,  # a name waiting for a member to run it
}
REASONS = {"PAYLOAD_TOO_LARGE", "ENTRY_TOO_LARGE", "FANOUT_TOO_LARGE", "MAILBOX_FULL"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        tmp_path_factory.mktemp("fuzz"),
        1,
        config={
            "max_payload_bytes": PAYLOAD,
            "max_entry_bytes": ENTRY,
            "max_fanout_bytes": FANOUT,
        },
    )
    try:
        c.start(timeout=30)
        stub = c.stub("n1")
        for i in range(3):  # something to find, call, join and fan out to
            stub.Register(pb.RegisterRequest(spec=pb.NameSpec(name=f"fz/{i}", kind="echo")))
            stub.Join(pb.GroupRequest(group="fz/g", name=f"fz/{i}"))
        yield c
    finally:
        c.close()


def around(limit: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, limit - 1, limit, limit + 1, 2 * limit])


valid_names = st.sampled_from(["fz/0", "fz/1", "fz/2", "fz/g", "x" * MAX_NAME_BYTES, "é" * 127])
new_names = st.integers(0, 50).map(lambda i: f"fz/new{i}")
bad_names = st.sampled_from(["", "x" * (MAX_NAME_BYTES + 1), "é" * 128, "a\x00b", "\t"])
names = st.one_of(valid_names, new_names, valid_names, new_names, bad_names, st.text(max_size=20))
kinds = st.sampled_from(["echo", "echo", "echo", "counter", "", "nope", "x" * 300])
payloads = around(PAYLOAD).map(lambda n: b"p" * n)
args = around(PAYLOAD).map(lambda n: b"a" * n)
near_payload = st.sampled_from([PAYLOAD - 1, PAYLOAD]).map(lambda n: b"b" * n)
"""Valid args near the payload limit: two specs fit in ``ENTRY``, three do not."""


def spec(name: str, kind: str, arg: bytes, roles: list[str]) -> pb.NameSpec:
    return pb.NameSpec(name=name, kind=kind, args=arg, roles=roles)


specs = st.builds(spec, names, kinds, args, st.lists(st.sampled_from(["", "web", "é"]), max_size=2))
WRITES = {"Register", "RegisterMany", "Unregister", "Join", "Leave"}
big_register_many = st.tuples(
    st.just("RegisterMany"),
    st.builds(
        pb.RegisterManyRequest,
        specs=st.lists(
            st.builds(spec, new_names, st.just("echo"), near_payload, st.just([])),
            min_size=2,
            max_size=4,
            unique_by=lambda s: s.name,
        ),
    ),
)
fan_out = st.tuples(  # the fixture's 3-member group at and around max_fanout_bytes
    st.sampled_from(["Publish", "MultiCall"]),
    st.sampled_from([PAYLOAD - 2, PAYLOAD - 1, PAYLOAD]).map(lambda n: b"f" * n),
).map(
    lambda mp: (
        mp[0],
        pb.PublishRequest(group="fz/g", payload=mp[1])
        if mp[0] == "Publish"
        else pb.MultiCallRequest(group="fz/g", payload=mp[1]),
    )
)
requests = st.one_of(
    big_register_many,
    fan_out,
    st.tuples(st.just("Register"), st.builds(pb.RegisterRequest, spec=specs)),
    st.tuples(
        st.just("RegisterMany"),
        st.builds(pb.RegisterManyRequest, specs=st.lists(specs, max_size=6)),
    ),
    st.tuples(  # entries at and around max_entry_bytes: valid specs, big args
        st.just("RegisterMany"),
        st.builds(
            pb.RegisterManyRequest,
            specs=st.lists(
                st.builds(spec, new_names, st.just("echo"), near_payload, st.just([])),
                min_size=2,
                max_size=4,
                unique_by=lambda s: s.name,
            ),
        ),
    ),
    st.tuples(st.just("Unregister"), st.builds(pb.UnregisterRequest, name=names)),
    st.tuples(st.just("Join"), st.builds(pb.GroupRequest, group=names, name=names)),
    st.tuples(st.just("Leave"), st.builds(pb.GroupRequest, group=names, name=names)),
    st.tuples(
        st.just("WhereIs"),
        st.builds(pb.WhereIsRequest, name=names, consistent=st.booleans()),
    ),
    st.tuples(
        st.just("List"),
        st.builds(pb.ListRequest, prefix=names, limit=st.integers(0, 2**32 - 1)),
    ),
    st.tuples(st.just("Members"), st.builds(pb.MembersRequest, group=names)),
    st.tuples(st.just("Call"), st.builds(pb.CallRequest, name=names, payload=payloads)),
    st.tuples(st.just("Cast"), st.builds(pb.CastRequest, name=names, payload=payloads)),
    st.tuples(st.just("Publish"), st.builds(pb.PublishRequest, group=names, payload=payloads)),
    st.tuples(
        st.just("MultiCall"),
        st.builds(
            pb.MultiCallRequest,
            group=names,
            payload=payloads,
            timeout_s=st.sampled_from([0.0, 1.0, -1.0, float("nan"), float("inf")]),
        ),
    ),
)


def registry_state(stub: Any) -> tuple[object, ...]:
    listed = stub.List(pb.ListRequest(), timeout=5).locations
    names_ = tuple((loc.name, loc.kind) for loc in listed)
    members = stub.Members(pb.MembersRequest(group="fz/g"), timeout=5).names
    return names_, tuple(members)


def reason_of(exc: Any) -> str:
    return str(dict(exc.trailing_metadata() or ()).get("registry-reason", ""))


def check_refusal(exc: Any) -> None:
    code = exc.code()
    assert code in DOCUMENTED, f"undocumented status {code}: {exc.details()}"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        reason = reason_of(exc)
        assert reason in REASONS, (reason, exc.details())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests)
def test_every_request_gets_a_documented_status_and_refusals_change_nothing(
    node: LocalCluster, request: tuple[str, Any]
) -> None:
    method, message = request
    stub = node.stub("n1")
    before = registry_state(stub)
    call: Callable[[], object] = functools.partial(getattr(stub, method), message, timeout=10)
    try:
        call()
    except grpc.RpcError as error:
        exc: Any = error
        check_refusal(exc)
        reason = reason_of(exc)
        event(f"{method}: {exc.code().name} {reason} {exc.details()[:60]}")
        if method in WRITES:
            assert registry_state(stub) == before, f"a refused {method} changed the registry"
    else:
        event(f"{method}: OK")
        if method == "Unregister" and message.name.startswith("fz/") and message.name[3:] in "012":
            # Keep the fixture's names for the other examples. The name stays UNREGISTERING
            # (re-registering it is FAILED_PRECONDITION) until its worker has stopped.
            spec = pb.NameSpec(name=message.name, kind="echo")

            def registered_again() -> bool:
                try:
                    node.stub("n1").Register(pb.RegisterRequest(spec=spec), timeout=10)
                except grpc.RpcError as still:
                    if still.code() is grpc.StatusCode.FAILED_PRECONDITION:
                        return False
                    raise
                return True

            wait_for(f"{message.name} registered again after its stop", registered_again, 10)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=64), method=st.sampled_from(["Register", "Call", "Watch"]))
def test_undecodable_bytes_are_invalid_argument(
    node: LocalCluster, raw: bytes, method: str
) -> None:
    channel: Any = node.channel("n1")
    path = f"/registry.v1.Registry/{method}"
    try:
        if method == "Watch":
            stream = channel.unary_stream(path)(raw, timeout=2)
            try:
                next(iter(stream))
            finally:
                stream.cancel()
        else:
            channel.unary_unary(path)(raw, timeout=5)
    except grpc.RpcError as error:
        exc: Any = error
        code = exc.code()
        assert code in DOCUMENTED or code is grpc.StatusCode.CANCELLED, (code, exc.details())


def test_the_node_logged_no_traceback(node: LocalCluster) -> None:
    log = node.nodes["n1"].log_path.read_text(encoding="utf-8", errors="replace")
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 500) : at + 4000]
