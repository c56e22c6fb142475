"""The client SDK without a cluster: status → exception mapping, retry classification,
backoff bounds (seeded RNG), the retry loop against scripted failures, and the
placement cache / address book."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable
from random import Random
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

import registry
from registry.client import (
    Backoff,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    Location,
    NameTaken,
    NoQuorum,
    NotFound,
    PayloadTooLarge,
    Placed,
    Redirect,
    Registration,
    RegistryError,
    Removed,
    Reset,
    Synced,
    Unauthenticated,
    Unavailable,
    Waiting,
    WorkerError,
    should_retry,
    translate,
)
from registry.client.connection import Connection
from registry.client.errors import StorageFull, Superseded, _StatusError
from registry.client.routing import Peers, PlacementCache
from registry.core.errors import NotLeader, TransferInProgress
from registry.core.errors import RegistryError as CoreRegistryError
from registry.core.state import Code
from registry.node.status import Abort, refusal_for, relayed
from registry.wire.errors import REASONS
from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed

SC = grpc.StatusCode


def _status(error: RegistryError) -> _StatusError:
    assert isinstance(error, _StatusError)
    return error


REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)

# -- translate: status → exception ------------------------------------------------------

NO_QUORUM = Abort(SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable (n1)", reason="NO_QUORUM")


def _answer(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """What a node answers for ``exc``: through the node's one translation point."""
    refusal = refusal_for(exc)
    return refusal.code, refusal.message, refusal.trailers("n1")


def _from_node(exc: BaseException, address: str = "") -> _StatusError:
    code, message, trailers = _answer(exc)
    return _status(translate(code, message, trailers, address=address))


# Each server-side refusal (the node's own errors, core results, service aborts) and the
# client class, reason, and whether it may have run, that the SDK makes of it.
NODE_ERRORS = [
    (
        Abort.result(Code.ALREADY_EXISTS, "'a' is already registered"),
        NameTaken,
        "NAME_TAKEN",
        False,
    ),
    (
        Abort.result(Code.ALREADY_EXISTS, "in group", "ALREADY_IN_GROUP"),
        NameTaken,
        "ALREADY_IN_GROUP",
        False,
    ),
    (Abort.result(Code.NOT_FOUND, "'a' is not registered"), NotFound, "NOT_FOUND", False),
    (
        Abort(SC.INVALID_ARGUMENT, "name must not be empty"),
        InvalidArgument,
        "INVALID_ARGUMENT",
        False,
    ),
    (
        Abort.result(Code.FAILED_PRECONDITION, "no member can host 'a'"),
        FailedPrecondition,
        "NO_HOST",
        False,
    ),
    (
        Abort.result(Code.FAILED_PRECONDITION, "stopping", "UNREGISTERING"),
        FailedPrecondition,
        "UNREGISTERING",
        False,
    ),
    (
        Abort(SC.RESOURCE_EXHAUSTED, "payload of 9 bytes is over the 8-byte limit"),
        PayloadTooLarge,
        "PAYLOAD_TOO_LARGE",
        False,
    ),
    (Abort(SC.RESOURCE_EXHAUSTED, "disk full", reason="NOSPACE"), StorageFull, "NOSPACE", False),
    (CallTimeout("a", 1.0), DeadlineExceeded, "WORKER_TIMEOUT", True),
    (WorkerFailed("a", "ValueError: x"), WorkerError, "WORKER_ERROR", True),
    (
        Abort.result(Code.STALE, "that activation was already replaced"),
        Superseded,
        "STALE_TOKEN",
        False,
    ),
    (NO_QUORUM, NoQuorum, "NO_QUORUM", False),
    (NotLeader(""), NoQuorum, "NO_QUORUM", False),
    (NotLeader("n2"), Unavailable, "NOT_LEADER", False),
    (TransferInProgress("transferring"), Unavailable, "NOT_RUN", False),
    (
        Abort.result(Code.UNAVAILABLE, "no member has joined the cluster yet; retry shortly"),
        Unavailable,
        "NO_MEMBERS",
        False,
    ),
    (NoLease("n2"), Unavailable, "NO_LEASE", False),
    (NotHere("a", "moving"), Unavailable, "MOVING", False),
    (Abort(SC.UNAVAILABLE, "'a' is waiting", reason="WAITING"), Unavailable, "WAITING", False),
    (
        Abort(SC.UNAVAILABLE, "'a' runs on n3, not here", reason="NOT_OWNER", owner=("n3", "h:3")),
        Unavailable,
        "NOT_OWNER",
        False,
    ),
    (KeyError("x"), InternalError, "INTERNAL", True),
]


@pytest.mark.parametrize(("exc", "cls", "reason", "may_have_run"), NODE_ERRORS)
def test_translate_maps_each_node_refusal_by_its_reason(
    exc: BaseException, cls: type[RegistryError], reason: str, may_have_run: bool
) -> None:
    error = _from_node(exc, "127.0.0.1:7400")
    assert type(error) is cls
    assert isinstance(error, CoreRegistryError)  # one hierarchy, the core's base
    assert error.reason == reason
    assert error.may_have_run is may_have_run
    assert str(refusal_for(exc).message) in str(error)
    assert error.code == refusal_for(exc).code.name
    assert error.address == "127.0.0.1:7400"
    assert reason in REASONS and REASONS[reason].code == error.code


def test_every_reason_a_node_sends_is_decided_without_the_message_text() -> None:
    """The same refusals with their message replaced by nonsense: same class, same
    retry decision (the SDK reads the reason, not the English)."""
    for exc, cls, reason, may_have_run in NODE_ERRORS:
        code, _, trailers = _answer(exc)
        error = _status(translate(code, "zzz", trailers))
        assert (type(error), error.reason, error.may_have_run) == (cls, reason, may_have_run)


def test_a_definite_refusal_carries_retry_info_and_is_retried_even_for_a_write() -> None:
    no_members = Abort.result(Code.UNAVAILABLE, "no member has joined the cluster yet")
    code, message, trailers = _answer(no_members)
    status = status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])
    assert status.code == SC.UNAVAILABLE.value[0] and status.message == message
    kinds = {item.TypeName() for item in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"}
    assert should_retry(translate(code, message, trailers), idempotent=False)
    # An answer that may have run gets no RetryInfo and no blind retry.
    code, message, trailers = _answer(WorkerFailed("a", "boom"))
    status = status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])
    assert {item.TypeName() for item in status.details} == {"google.rpc.ErrorInfo"}
    assert not should_retry(translate(code, message, trailers), idempotent=True)


@pytest.mark.parametrize(
    ("code", "details", "cls"),
    [
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", DeadlineExceeded),
        (SC.UNAUTHENTICATED, "bad token", Unauthenticated),
        (SC.PERMISSION_DENIED, "not allowed", Unauthenticated),
        (SC.CANCELLED, "Cancelled", Unavailable),
        (SC.UNKNOWN, "Exception calling application", InternalError),
        (SC.UNIMPLEMENTED, "Method not found!", InternalError),
    ],
)
def test_translate_maps_statuses_without_a_reason_by_code(
    code: grpc.StatusCode, details: str, cls: type[RegistryError]
) -> None:
    error = _status(translate(code, details, address="127.0.0.1:7400"))
    assert type(error) is cls
    assert details in str(error)
    assert error.code == code.name
    assert error.reason == ""


def test_translate_accepts_code_names_as_multi_call_results_carry_them() -> None:
    assert type(translate("ABORTED", "worker failed")) is WorkerError
    assert type(translate("NOT_A_CODE", "?")) is InternalError
    assert "UNKNOWN" in str(translate("NOT_A_CODE", "?"))


def test_translate_reads_redirects_from_details_and_from_legacy_metadata() -> None:
    moved = Abort(SC.UNAVAILABLE, "moved", reason="NOT_OWNER", owner=("n2", "127.0.0.1:7401"))
    code, message, trailers = _answer(moved)
    details_only = tuple((k, v) for k, v in trailers if k == "grpc-status-details-bin")
    error = _status(translate(code, message, details_only))
    assert error.owner == Redirect("n2", "127.0.0.1:7401") and error.leader is None
    assert error.reason == "NOT_OWNER"
    # An older node sends only the registry-* trailers (str or bytes).
    legacy = _status(
        translate(
            SC.UNAVAILABLE,
            "'a' runs on n2, not here",
            (
                ("registry-leader", b"n1@127.0.0.1:7400"),
                ("registry-owner", "n2@127.0.0.1:7401"),
                ("registry-reason", "NOT_OWNER"),
                ("other", "x"),
            ),
        )
    )
    assert legacy.leader == Redirect("n1", "127.0.0.1:7400")
    assert legacy.owner == Redirect("n2", "127.0.0.1:7401")
    assert legacy.may_have_run is False


def test_relayed_keeps_the_answering_nodes_reason_and_names_the_hop() -> None:
    code, message, trailers = _answer(Abort.result(Code.ALREADY_EXISTS, "'a' taken"))
    leader_said = grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=message
    )
    error = _from_node(relayed(leader_said, leader=("n1", "127.0.0.1:7400")))
    assert (type(error), error.reason) == (NameTaken, "NAME_TAKEN")
    assert error.leader == Redirect("n1", "127.0.0.1:7400")
    for transport, reason, ran in [
        (REFUSED, "UNREACHABLE", False),
        ("Socket closed", "CONNECTION_LOST", True),
    ]:
        hop = grpc.aio.AioRpcError(
            SC.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=transport
        )
        error = _from_node(relayed(hop, owner=("n2", "127.0.0.1:7401")))
        assert (error.reason, error.may_have_run, error.unreachable) == (reason, ran, True)
        assert error.owner == Redirect("n2", "127.0.0.1:7401")
        # A person reads which hop failed and whether the request may have got there;
        # gRPC's own words stay, in parentheses.
        said = str(error)
        assert "owner n2 at 127.0.0.1:7401" in said and f"({transport})" in said, said
        assert ("may have been applied" in said) is ran, said


def test_a_reason_newer_than_the_sdk_is_retried_only_with_retry_info() -> None:
    code, message, trailers = _answer(Abort(SC.UNAVAILABLE, "new", reason="SOMETHING_NEW"))
    assert translate(code, message, trailers).may_have_run is True  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(50)
    status.details.add().Pack(retry)
    again = translate(code, message, (("grpc-status-details-bin", status.SerializeToString()),))
    assert again.may_have_run is False  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["", "n1", "@127.0.0.1:1", "n1@", "n1@nohostport"])
def test_redirect_parse_rejects_malformed_values(value: str) -> None:
    assert Redirect.parse(value) is None


@pytest.mark.parametrize(
    ("code", "details", "may_have_run", "unreachable"),
    [
        # Statuses without a reason: the gRPC library's own. Never connected: not sent.
        (SC.UNAVAILABLE, REFUSED, False, True),
        (SC.UNAVAILABLE, "DNS resolution failed for nowhere:1", False, True),
        # The connection broke after sending: it may have run.
        (SC.UNAVAILABLE, "Stream removed (Socket closed)", True, True),
        (SC.UNAVAILABLE, "recvmsg:Connection reset by peer", True, True),
        (SC.UNAVAILABLE, "something nobody planned for", True, False),
        # Server text without a reason is not trusted (an old node): it may have run.
        (SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable", True, False),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", True, False),
        (SC.ABORTED, "worker 'a' failed: boom", True, False),
        (SC.NOT_FOUND, "'a' is not registered", False, False),
    ],
)
def test_translate_decides_whether_it_may_have_run(
    code: grpc.StatusCode, details: str, may_have_run: bool, unreachable: bool
) -> None:
    error = _status(translate(code, details))
    assert error.may_have_run is may_have_run
    assert error.unreachable is unreachable


# -- retry classification ---------------------------------------------------------------


@pytest.mark.parametrize(("exc", "cls", "reason", "may_have_run"), NODE_ERRORS)
def test_should_retry_follows_the_reason_table(
    exc: BaseException, cls: type[RegistryError], reason: str, may_have_run: bool
) -> None:
    code, message, trailers = _answer(exc)
    error = translate(code, message, trailers)
    assert should_retry(error, idempotent=False) is REASONS[reason].retry
    idempotent = REASONS[reason].retry or code in (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED)
    assert should_retry(error, idempotent=True) is idempotent


@pytest.mark.parametrize(
    ("code", "details", "plain", "idempotent"),
    [
        (SC.UNAVAILABLE, REFUSED, True, True),
        (SC.UNAVAILABLE, "Stream removed (Socket closed)", False, True),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", False, True),
        (SC.INTERNAL, "bug", False, False),
    ],
)
def test_should_retry_without_a_reason(
    code: grpc.StatusCode, details: str, plain: bool, idempotent: bool
) -> None:
    error = translate(code, details)
    assert should_retry(error, idempotent=False) is plain
    assert should_retry(error, idempotent=True) is idempotent


# -- backoff ----------------------------------------------------------------------------


def test_backoff_delays_stay_within_bounds_and_grow_to_the_cap() -> None:
    backoff = Backoff(initial=0.01, maximum=0.5, multiplier=2.0)
    rng = Random(7)
    for attempt in range(200):
        base = min(0.5, 0.01 * 2.0**attempt)
        assert backoff.base(attempt) == pytest.approx(base)
        delay = backoff.delay(attempt, rng)
        assert base / 2 <= delay <= base
    assert backoff.base(10_000) == 0.5  # no overflow on a long outage


def test_backoff_is_deterministic_with_a_seeded_rng() -> None:
    backoff = Backoff()
    first = [backoff.delay(n, Random(42)) for n in range(10)]
    again = [backoff.delay(n, Random(42)) for n in range(10)]
    assert first == again
    rng_a, rng_b = Random(1), Random(1)
    assert [backoff.delay(n, rng_a) for n in range(10)] == [
        backoff.delay(n, rng_b) for n in range(10)
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0.0}, {"initial": 2.0, "maximum": 1.0}, {"multiplier": 0.5}],
)
def test_backoff_rejects_contradictions(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)


# -- the retry loop, against scripted failures ------------------------------------------


def _rpc_error(
    code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, Any], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )


def _refused(exc: BaseException) -> grpc.aio.AioRpcError:
    """The AioRpcError a client sees when a node refuses with ``exc``."""
    return _rpc_error(*_answer(exc))


Script = list[grpc.aio.AioRpcError | str]


def _run_script(
    script: Script,
    *,
    idempotent: bool,
    timeout: float = 5.0,
    seeds: tuple[str, ...] = ("10.0.0.1:1", "10.0.0.2:1"),
) -> tuple[object, list[str]]:
    """Run one ``Connection.retrying`` whose attempts fail/answer as ``script`` says;
    returns (result or raised error, the addresses attempted)."""
    seen: list[str] = []

    async def main() -> object:
        conn = Connection(
            list(seeds),
            use_cache=False,
            backoff=Backoff(initial=0.001, maximum=0.004),
            rng=Random(3),
            channel_options=(),
        )
        conn.peers.learn("n1", seeds[0])
        conn.peers.learn("n2", seeds[1])
        steps = iter(script)

        def target(failed: str) -> str:
            address = conn.peers.pick(avoid=failed)
            seen.append(address)
            return address

        def send(stub: Any, remaining: float) -> Awaitable[str]:
            async def attempt() -> str:
                step = next(steps)
                if isinstance(step, str):
                    return step
                raise step

            return attempt()

        try:
            return await conn.retrying(
                "op", send, target, conn.now() + timeout, idempotent=idempotent, name="a"
            )
        except RegistryError as exc:
            return exc
        finally:
            await conn.close()

    return asyncio.run(main()), seen


def test_retry_loop_retries_refusals_then_answers() -> None:
    result, seen = _run_script(
        [
            _rpc_error(SC.UNAVAILABLE, REFUSED),
            _refused(NO_QUORUM),
            "ok",
        ],
        idempotent=False,
    )
    assert result == "ok"
    assert seen[0] != seen[1], "an unreachable node is not asked again at once"


def test_retry_loop_retries_a_write_refused_before_any_member_joined() -> None:
    """Right after a cluster starts, "no member has joined yet" is a definite refusal:
    a register (not idempotent) is sent again within the deadline."""
    no_members = Abort.result(Code.UNAVAILABLE, "no member has joined the cluster yet")
    result, seen = _run_script([_refused(no_members), _refused(no_members), "ok"], idempotent=False)
    assert result == "ok"
    assert len(seen) == 3


def test_retry_loop_follows_a_leader_redirect() -> None:
    leader = ("n2", "10.0.0.2:1")
    not_leader = Abort(SC.UNAVAILABLE, "not the leader", reason="NOT_LEADER", leader=leader)
    result, seen = _run_script([_refused(not_leader), "ok"], idempotent=False)
    assert result == "ok"
    assert seen == ["10.0.0.1:1", "10.0.0.2:1"]


def test_retry_loop_does_not_resend_a_call_that_may_have_run() -> None:
    result, seen = _run_script(
        [_rpc_error(SC.UNAVAILABLE, "Stream removed (Socket closed)"), "ok"], idempotent=False
    )
    assert isinstance(result, Unavailable)
    assert result.may_have_run
    assert "may already have run" in str(result) and "idempotent=True" in str(result)
    assert len(seen) == 1


def test_retry_loop_resends_an_idempotent_call_that_may_have_run() -> None:
    result, seen = _run_script(
        [
            _rpc_error(SC.UNAVAILABLE, "Stream removed (Socket closed)"),
            _rpc_error(SC.DEADLINE_EXCEEDED, "Deadline Exceeded"),
            "ok",
        ],
        idempotent=True,
    )
    assert result == "ok"
    assert len(seen) == 3


def test_retry_loop_raises_answers_at_once() -> None:
    result, seen = _run_script([_rpc_error(SC.NOT_FOUND, "'a' is not registered")], idempotent=True)
    assert isinstance(result, NotFound)
    assert str(result).startswith("op: 'a' is not registered")
    assert len(seen) == 1


def test_retry_loop_gives_up_at_the_deadline_with_the_last_error() -> None:
    refusal = _refused(NO_QUORUM)
    result, seen = _run_script([refusal] * 10_000, idempotent=True, timeout=2.0)
    assert isinstance(result, NoQuorum)
    assert "gave up after" in str(result)
    assert not result.may_have_run
    assert len(seen) >= 2, "it retried before giving up (a starved CPU may allow few tries)"


def test_retry_loop_refuses_a_zero_timeout() -> None:
    result, seen = _run_script(["ok"], idempotent=True, timeout=0.0)
    assert isinstance(result, DeadlineExceeded)
    assert seen == ["10.0.0.1:1"]


# -- placement cache and address book ----------------------------------------------------


def _loc(name: str, node: str, token: int = 1) -> Location:
    return Location(name=name, node=node, address=f"{node}:1", token=token)


def test_cache_answers_only_when_synced_and_resyncs_after_reset() -> None:
    cache = PlacementCache()
    cache.apply(Reset(index=5))
    cache.apply(Placed(location=_loc("a", "n1"), index=5))
    assert cache.lookup("a") == (False, None)  # listing not complete yet
    cache.apply(Waiting(name="w", index=5))
    cache.apply(Synced(index=5))
    assert cache.lookup("a") == (True, _loc("a", "n1"))
    assert cache.lookup("w") == (True, None)
    assert cache.lookup("unknown") == (False, None)  # ask a node: it may be brand new
    cache.apply(Placed(location=_loc("a", "n2", 9), index=9))
    assert cache.route("a") == ("n2", "n2:1")
    cache.apply(Removed(name="a", index=10))
    assert cache.lookup("a") == (False, None)
    cache.disconnected()
    assert not cache.synced
    cache.apply(Reset(index=11))
    assert len(cache) == 0


def test_cache_never_answers_behind_this_clients_own_write() -> None:
    cache = PlacementCache()
    cache.apply(Reset(index=1))
    cache.apply(Placed(location=_loc("a", "n1"), index=1))
    cache.apply(Synced(index=1))
    cache.wrote("a", 7)  # e.g. unregistered at index 7
    assert cache.lookup("a") == (False, None)
    cache.apply(Placed(location=_loc("a", "n1"), index=6))  # older than the write
    assert cache.lookup("a") == (False, None)
    cache.apply(Removed(name="a", index=7))
    assert cache.lookup("a") == (False, None)
    cache.apply(Placed(location=_loc("a", "n3", 8), index=8))
    assert cache.lookup("a") == (True, _loc("a", "n3", 8))


def test_cache_keeps_an_event_that_beat_the_write_reply() -> None:
    cache = PlacementCache()
    cache.apply(Reset(index=1))
    cache.apply(Synced(index=1))
    cache.apply(Placed(location=_loc("a", "n2", 8), index=8))
    cache.wrote("a", 8)  # the reply to register(a) arrives after its event
    assert cache.lookup("a") == (True, _loc("a", "n2", 8))


def test_cache_hints_override_entries_until_the_next_event() -> None:
    cache = PlacementCache()
    cache.apply(Reset(index=1))
    cache.apply(Placed(location=_loc("a", "n1"), index=1))
    cache.apply(Synced(index=1))
    cache.hint("a", "n2", "n2:1")
    assert cache.route("a") == ("n2", "n2:1")
    cache.miss("a", "n2:1")
    assert cache.route("a") == ("n1", "n1:1")
    cache.miss("a", "n1:1")
    assert cache.route("a") is None  # masked: ask any node, it forwards
    cache.apply(Placed(location=_loc("a", "n3", 2), index=2))
    assert cache.route("a") == ("n3", "n3:1")


def test_peers_prefer_the_leader_and_rotate_past_failures() -> None:
    peers = Peers(["s1:1", "s2:1", "s1:1"])
    assert peers.seeds == ["s1:1", "s2:1"]
    assert peers.pick() == "s1:1"
    peers.failed("s1:1")
    assert peers.pick() == "s2:1"
    peers.learn_members({"n1": "a:1", "n2": "b:1"}, "b:1")
    assert peers.pick() == "b:1"
    assert peers.pick(avoid="b:1") != "b:1"
    assert peers.node_at("a:1") == "n1"
    peers.failed("b:1")
    assert peers.leader == ""
    with pytest.raises(ValueError, match="seed"):
        Peers([])


# -- values -----------------------------------------------------------------------------


def test_registration_priority_forms() -> None:
    spec = Registration("a", "k", priority=["n1", ["n2", "n3"]]).to_pb()
    assert [list(t.nodes) for t in spec.priority] == [["n1"], ["n2", "n3"]]
    assert [list(t.nodes) for t in Registration("a", "k", priority="n1").to_pb().priority] == [
        ["n1"]
    ]
    plain = Registration("a", "k", args=b"x", roles=("web",)).to_pb()
    assert (plain.args, list(plain.roles), list(plain.priority)) == (b"x", ["web"], [])


def test_public_names_are_exported_lazily() -> None:
    for name in ("Client", "SyncClient", "Location", "ClusterStatus", "NameTaken", "NoQuorum"):
        assert name in registry.__all__
        assert getattr(registry, name) is getattr(registry.client, name)
    code = (
        "import sys, registry, registry.core; "
        "assert 'grpc' not in sys.modules, 'import registry pulled in grpc'; "
        "registry.Client; assert 'grpc' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_replace_keeps_the_class_and_may_have_run() -> None:
    error = _status(translate(SC.UNAVAILABLE, "Stream removed (Socket closed)", address="h:1"))
    copied = error.replace("call 'a': broke", may_have_run=False)
    assert type(copied) is Unavailable
    assert str(copied) == "call 'a': broke"
    assert copied.may_have_run  # or-ed in, never lost
    assert copied.address == "h:1"


@pytest.mark.parametrize(
    ("reason", "cls_name"),
    [
        ("MAILBOX_FULL", "Overloaded"),
        ("TOO_MANY_RPCS", "Overloaded"),
        ("TOO_MANY_WATCHES", "Overloaded"),
        ("ENTRY_TOO_LARGE", "PayloadTooLarge"),
        ("FANOUT_TOO_LARGE", "PayloadTooLarge"),
        ("NOSPACE", "StorageFull"),
    ],
)
def test_translate_tells_limits_apart_by_reason(reason: str, cls_name: str) -> None:
    """Issue 16: RESOURCE_EXHAUSTED means "retry later" for a bound on concurrency and
    "never as is" for a size; only the reason tells them apart."""
    error = translate(SC.RESOURCE_EXHAUSTED, "refused", (("registry-reason", reason),))
    assert type(error).__name__ == cls_name
    assert _status(error).reason == reason
