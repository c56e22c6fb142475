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
from registry.client.errors import _StatusError
from registry.client.routing import Peers, PlacementCache
from registry.core.errors import RegistryError as CoreRegistryError

SC = grpc.StatusCode


def _status(error: RegistryError) -> _StatusError:
    assert isinstance(error, _StatusError)
    return error


REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)

# -- translate: status → exception ------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "cls"),
    [
        (SC.ALREADY_EXISTS, "'a' is already registered", NameTaken),
        (SC.NOT_FOUND, "'a' is not registered", NotFound),
        (SC.INVALID_ARGUMENT, "name must not be empty", InvalidArgument),
        (SC.FAILED_PRECONDITION, "no member can host 'a'", FailedPrecondition),
        (SC.RESOURCE_EXHAUSTED, "payload of 9 bytes is over the 8-byte limit", PayloadTooLarge),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", DeadlineExceeded),
        (SC.UNAUTHENTICATED, "bad token", Unauthenticated),
        (SC.PERMISSION_DENIED, "not allowed", Unauthenticated),
        (SC.ABORTED, "worker 'a' failed: ValueError: x", WorkerError),
        (SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable (n1)", NoQuorum),
        (SC.UNAVAILABLE, "not the leader: no leader is known", NoQuorum),
        (SC.UNAVAILABLE, "worker 'a' is not running on this node", Unavailable),
        (SC.CANCELLED, "Cancelled", Unavailable),
        (SC.INTERNAL, "internal error (KeyError): 'x'", InternalError),
        (SC.UNKNOWN, "Exception calling application", InternalError),
        (SC.UNIMPLEMENTED, "Method not found!", InternalError),
    ],
)
def test_translate_maps_each_status_to_one_class(
    code: grpc.StatusCode, details: str, cls: type[RegistryError]
) -> None:
    error = _status(translate(code, details, address="127.0.0.1:7400"))
    assert type(error) is cls
    assert isinstance(error, RegistryError)
    assert isinstance(error, CoreRegistryError)  # one hierarchy, the core's base
    assert details in str(error)
    assert error.code == code.name
    assert error.address == "127.0.0.1:7400"


def test_translate_accepts_code_names_as_multi_call_results_carry_them() -> None:
    assert type(translate("ABORTED", "worker failed")) is WorkerError
    assert type(translate("NOT_A_CODE", "?")) is InternalError
    assert "UNKNOWN" in str(translate("NOT_A_CODE", "?"))


def test_translate_reads_redirect_metadata_str_and_bytes() -> None:
    error = _status(
        translate(
            SC.UNAVAILABLE,
            "'a' runs on n2, not here",
            (
                ("registry-leader", b"n1@127.0.0.1:7400"),
                ("registry-owner", "n2@127.0.0.1:7401"),
                ("other", "x"),
            ),
        )
    )
    assert error.leader == Redirect("n1", "127.0.0.1:7400")
    assert error.owner == Redirect("n2", "127.0.0.1:7401")


@pytest.mark.parametrize("value", ["", "n1", "@127.0.0.1:1", "n1@", "n1@nohostport"])
def test_redirect_parse_rejects_malformed_values(value: str) -> None:
    assert Redirect.parse(value) is None


@pytest.mark.parametrize(
    ("code", "details", "may_have_run", "unreachable"),
    [
        # The node refused before anything ran.
        (SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable", False, False),
        (SC.UNAVAILABLE, "node n2 holds no lease: it serves no workers", False, False),
        (SC.UNAVAILABLE, "worker 'a' is not running on this node (moving)", False, False),
        (SC.UNAVAILABLE, "'a' is waiting for an eligible member to run it", False, False),
        (SC.UNAVAILABLE, "'a' runs on n3, not here", False, False),
        # Never connected: nothing was sent.
        (SC.UNAVAILABLE, REFUSED, False, True),
        (SC.UNAVAILABLE, "DNS resolution failed for nowhere:1", False, True),
        # The connection broke after sending: it may have run.
        (SC.UNAVAILABLE, "Stream removed (Socket closed)", True, True),
        (SC.UNAVAILABLE, "recvmsg:Connection reset by peer", True, True),
        (SC.UNAVAILABLE, "something nobody planned for", True, False),
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


@pytest.mark.parametrize(
    ("code", "details", "plain", "idempotent"),
    [
        (SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable", True, True),
        (SC.UNAVAILABLE, "worker 'a' is not running on this node", True, True),
        (SC.UNAVAILABLE, REFUSED, True, True),
        (SC.UNAVAILABLE, "Stream removed (Socket closed)", False, True),
        (SC.DEADLINE_EXCEEDED, "Deadline Exceeded", False, True),
        (SC.ABORTED, "worker 'a' failed", False, False),
        (SC.NOT_FOUND, "'a' is not registered", False, False),
        (SC.ALREADY_EXISTS, "'a' is already registered", False, False),
        (SC.INVALID_ARGUMENT, "bad", False, False),
        (SC.RESOURCE_EXHAUSTED, "too big", False, False),
        (SC.INTERNAL, "bug", False, False),
    ],
)
def test_should_retry(code: grpc.StatusCode, details: str, plain: bool, idempotent: bool) -> None:
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
    code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )


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
            _rpc_error(SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable"),
            "ok",
        ],
        idempotent=False,
    )
    assert result == "ok"
    assert seen[0] != seen[1], "an unreachable node is not asked again at once"


def test_retry_loop_follows_a_leader_redirect() -> None:
    leader = ("registry-leader", "n2@10.0.0.2:1")
    result, seen = _run_script(
        [_rpc_error(SC.UNAVAILABLE, "not the leader: the leader is n2", (leader,)), "ok"],
        idempotent=False,
    )
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
    refusal = _rpc_error(SC.UNAVAILABLE, "no quorum: 1 of 3 voters reachable")
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
