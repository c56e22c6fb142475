"""The client SDK against real node processes (``Client`` and ``SyncClient``).

- On the shared calm cluster (``calm_cluster``, names under ``cli/``): register, call,
  whereis, watch; calls go straight to the owner once the cache is synced (no forwarding
  hop); groups, ``publish``, ``multi_call`` with a partial failure; typed errors.
- On this module's own cluster, which also runs the ``sleeper`` test worker and the
  chat-rooms example: a ``call`` in flight when its owner is ``kill -9``-ed succeeds when
  idempotent and fails at once, clearly, when not; the cache follows the failover and the
  move back when the node rejoins; ``DeadlineExceeded``; the example app end to end.
- ``NoQuorum`` from a lone node of a 3-voter cluster.

``Unauthenticated`` is not reachable through a real request: nodes have no
authentication yet (the status mapping is unit-tested in ``tests/unit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from registry import (
    Client,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    Location,
    NameTaken,
    NoQuorum,
    NotFound,
    PayloadTooLarge,
    Registration,
    RegistryError,
    SyncClient,
    Unavailable,
    WorkerError,
)
from registry.client import Placed, Removed, Reset, Synced, WatchEvent
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import REPO, LocalCluster, free_ports, wait_for

WORKER_MODULES = ("registry.examples", "tests.cluster.client_workers")


def _seeds(c: LocalCluster, *ids: str) -> list[str]:
    return [c.nodes[i].grpc_addr for i in (ids or tuple(c.ids))]


async def eventually(what: str, probe: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``probe`` (a condition, not a delay) until it is truthy, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def collect_into(stream: AsyncIterator[WatchEvent], into: list[WatchEvent]) -> None:
    async for event in stream:
        into.append(event)


@pytest.fixture(scope="module")
def client_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        tmp_path_factory.mktemp("client"), 3, preset="local", worker_modules=WORKER_MODULES
    )
    try:
        c.start(timeout=30.0)
        yield c
        assert not c.crashed(), f"node process(es) exited on their own: {c.crashed()}"
    finally:
        c.close()


# -- calm cluster ------------------------------------------------------------------------


def test_async_client_routes_straight_to_the_owner(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    names = [f"cli/a/c{i}" for i in range(6)]

    async def main() -> None:
        async with Client(_seeds(c, "n1")) as client:
            status = await client.cluster()
            assert {m.id for m in status.members} == set(c.ids) and status.leader

            events: list[WatchEvent] = []
            watcher = asyncio.create_task(collect_into(client.watch("cli/a/"), events))
            # Live events are what this checks: names registered before the watch
            # synced would arrive in its listing instead.
            await eventually(
                "the watch to sync", lambda: any(isinstance(e, Synced) for e in events)
            )
            index = await client.register_many([Registration(n, "counter") for n in names])
            await client.register("cli/a/probe", "probe", args=b"hi")
            assert index > 0

            await eventually(
                "the cache to know every name",
                lambda: all(client.cached(n) for n in [*names, "cli/a/probe"]),
            )
            owners = {n: client.cached(n) for n in names}
            assert len({loc.node for loc in owners.values() if loc}) >= 2, owners
            for name in names:  # the first call may meet a worker still starting
                assert await client.call(name, b"get", idempotent=True) == b"0"

            before = client.stats
            for name in names:
                for expected in (b"1", b"2", b"3"):
                    assert await client.call(name, b"incr") == expected
            after = client.stats
            assert after.calls - before.calls == 18
            assert after.calls_forwarded == before.calls_forwarded, "a call took an extra hop"
            assert after.calls_direct - before.calls_direct == 18

            # The location the cache routes by is the activation that answers.
            probe = client.cached("cli/a/probe")
            assert probe is not None
            assert await client.call("cli/a/probe", b"token") == str(probe.token).encode()
            assert await client.call("cli/a/probe", b"args") == b"hi"

            # whereis: from the cache, and linearizable from a node; they agree.
            lookups = client.stats.cache_lookups
            cached = await client.whereis(names[0])
            assert client.stats.cache_lookups == lookups + 1
            consistent = await client.whereis(names[0], consistent=True)
            assert cached is not None and consistent is not None
            assert (cached.node, cached.token, cached.address) == (
                consistent.node,
                consistent.token,
                consistent.address,
            )
            assert not consistent.stale
            assert await client.whereis("cli/a/never-registered") is None

            # Read-your-writes: right after unregister, whereis no longer finds it.
            await client.unregister(names[0])
            assert await client.whereis(names[0]) is None
            await eventually(
                "the watch to report the removal",
                lambda: any(isinstance(e, Removed) and e.name == names[0] for e in events),
            )
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

            assert isinstance(events[0], Reset)
            synced = next(i for i, e in enumerate(events) if isinstance(e, Synced))
            placed = {e.location.name for e in events[synced:] if isinstance(e, Placed)}
            assert set(names) <= placed

            late: list[WatchEvent] = []
            open_watch = asyncio.create_task(collect_into(client.watch("cli/a/"), late))
            await eventually(
                "a second watch to sync", lambda: any(isinstance(e, Synced) for e in late)
            )
        assert client.closed
        await asyncio.wait_for(open_watch, 5.0)  # close() ends an open watch, no error
        await client.close()  # safe twice

    asyncio.run(main())


def test_sync_client_groups_multi_call_and_watch(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    group = "cli/s/all"
    client = SyncClient(_seeds(c, "n2", "n3"), timeout=10.0)
    with client:
        echo = client.whereis_or_register("cli/s/echo", "echo")
        assert isinstance(echo, Location) and echo.node in c.ids and echo.token > 0
        assert client.whereis_or_register("cli/s/echo", "echo").token == echo.token
        client.register("cli/s/count", "counter")
        for name in ("cli/s/echo", "cli/s/count"):
            client.join(group, name)
        assert client.members(group) == ["cli/s/count", "cli/s/echo"]

        replies = client.multi_call(group, b"incr", timeout=5.0)
        assert replies == {"cli/s/echo": b"incr", "cli/s/count": b"1"}
        partial = client.multi_call(group, b"hello", timeout=5.0)
        assert partial["cli/s/echo"] == b"hello"
        assert isinstance(partial["cli/s/count"], WorkerError)
        assert "unknown command" in str(partial["cli/s/count"])
        assert partial["cli/s/count"].reason == "WORKER_ERROR"

        # The counter crashed on b"hello" and restarted from 0 (see Counter's docstring).
        assert client.publish(group, b"incr") == 2
        client.cast("cli/s/count", b"incr")
        wait_for("the casts to arrive", lambda: client.call("cli/s/count", b"get") == b"2", 5)

        client.leave(group, "cli/s/echo")
        assert client.members(group) == ["cli/s/count"]

        stream = client.watch("cli/s/")
        first = [next(stream) for _ in range(4)]
        stream.close()
        assert isinstance(first[0], Reset) and isinstance(first[3], Synced)
        assert {e.location.name for e in first if isinstance(e, Placed)} == {
            "cli/s/count",
            "cli/s/echo",
        }
        assert client.cluster().leader
    assert client.closed
    client.close()  # safe twice
    with pytest.raises(RuntimeError, match="closed"):
        client.cluster()


def test_every_typed_error_through_a_real_request(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    with SyncClient(_seeds(c, "n3"), timeout=5.0) as client:
        client.register("cli/e/count", "counter")
        with pytest.raises(NameTaken, match="already registered") as taken:
            client.register("cli/e/count", "counter")
        assert taken.value.reason == "NAME_TAKEN"
        with pytest.raises(NotFound, match="not registered"):
            client.call("cli/e/nobody", b"x")
        with pytest.raises(NotFound):
            client.unregister("cli/e/nobody")
        with pytest.raises(NotFound, match="no group"):
            client.members("cli/e/no-group")
        with pytest.raises(InvalidArgument, match="name must not be empty"):
            client.register("", "counter")
        with pytest.raises(FailedPrecondition, match="none runs kind") as no_host:
            client.register("cli/e/x", "no-such-kind")
        assert no_host.value.reason == "NO_HOST"
        with pytest.raises(PayloadTooLarge, match="limit") as too_large:
            client.call("cli/e/count", b"x" * ((4 << 20) + 1))
        assert too_large.value.reason == "PAYLOAD_TOO_LARGE"
        with pytest.raises(WorkerError, match="unknown command") as worker_error:
            client.call("cli/e/count", b"bogus", idempotent=True)
        assert (worker_error.value.code, worker_error.value.reason) == ("ABORTED", "WORKER_ERROR")
        assert client.call("cli/e/count", b"incr", idempotent=True) == b"1"

    nowhere = SyncClient(f"127.0.0.1:{free_ports(1)[0]}", timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="Connection refused") as unreachable:
            nowhere.cluster()
    finally:
        nowhere.close()
    assert time.monotonic() - started < 3.0
    assert not isinstance(unreachable.value, NoQuorum)
    assert not unreachable.value.may_have_run and unreachable.value.unreachable


# -- this module's cluster: failover, deadlines, the example -----------------------------


def test_call_across_kill_9_of_the_owner(client_cluster: LocalCluster, tmp_path: Path) -> None:
    c = client_cluster
    leader = c.wait_ready()
    victim = next(n for n in c.ids if n != leader)
    others = [n for n in c.ids if n != victim]
    markers = {n: tmp_path / f"{n}.log" for n in ("idem", "once")}

    async def main() -> None:
        async with Client(_seeds(c)) as client:
            for name, marker in markers.items():
                await client.register(
                    f"kill/{name}", "sleeper", args=str(marker).encode(), priority=[victim, others]
                )
            await eventually(
                f"both names cached on {victim}",
                lambda: all(
                    (loc := client.cached(f"kill/{n}")) and loc.node == victim for n in markers
                ),
            )
            first: dict[str, int] = {}
            for name in markers:
                reply = await client.call(f"kill/{name}", b"whoami", idempotent=True)
                node, token = reply.decode().split(":")
                assert node == victim
                first[name] = int(token)

            idem = asyncio.create_task(
                client.call("kill/idem", b"sleep:1.0", timeout=10.0, idempotent=True)
            )
            once = asyncio.create_task(client.call("kill/once", b"sleep:1.0", timeout=10.0))
            await eventually(
                "both calls to be running on the victim",
                lambda: all(m.exists() and m.read_text() for m in markers.values()),
            )
            c.kill(victim)
            killed = asyncio.get_running_loop().time()

            with pytest.raises(Unavailable) as failed:
                await once
            assert failed.value.may_have_run
            assert "may already have run" in str(failed.value)
            assert "idempotent=True" in str(failed.value)
            assert asyncio.get_running_loop().time() - killed < 1.0, "it must not be retried"

            reply = await idem
            took = asyncio.get_running_loop().time() - killed
            node, token = reply.decode().split(":")
            assert node in others, reply
            assert int(token) > first["idem"]
            assert took < 8.0, f"the idempotent call took {took:.1f} s after the kill"
            assert client.stats.retries > 0

            await eventually(
                "the cache to follow the failover",
                lambda: (loc := client.cached("kill/once")) and loc.node in others,
            )

            # A node joins (the victim restarts): the names move back to it (takeover),
            # and the cache follows the move.
            await asyncio.to_thread(c.restart, victim)
            await eventually(
                f"the cache to see both names back on {victim}",
                lambda: all(
                    (loc := client.cached(f"kill/{n}")) and loc.node == victim for n in markers
                ),
                timeout=15.0,
            )
            reply = await client.call("kill/idem", b"whoami", timeout=10.0, idempotent=True)
            assert reply.decode().split(":")[0] == victim

    asyncio.run(main())
    c.wait_ready()


def test_a_short_call_forwarded_to_a_killed_holder_is_unavailable(
    client_cluster: LocalCluster,
) -> None:
    """A node that forwards a call to a holder just killed waits for the channel only
    within half the caller's time (``unsent``), so a 0.4 s call ends UNAVAILABLE (never
    sent: a client may retry it), not DEADLINE_EXCEEDED (which says it may have run)."""
    c = client_cluster
    leader = c.wait_ready()
    victim = next(n for n in c.ids if n != leader)
    forwarder = next(n for n in c.ids if n not in (leader, victim))
    others = [n for n in c.ids if n != victim]
    name = "short/forwarded"
    with SyncClient(_seeds(c)) as client:
        client.register(name, "echo", priority=[victim, others])
        wait_for(
            f"{name} running on {victim}",
            lambda: (loc := client.whereis(name, True)) is not None and loc.node == victim,
            10.0,
        )
    request = pb.CallRequest(name=name, payload=b"warm")
    reply = c.stub(forwarder).Call(request, timeout=5.0)  # the forwarder's channel is up
    assert reply.node == victim
    c.kill(victim)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            c.stub(forwarder).Call(pb.CallRequest(name=name, payload=b"x"), timeout=0.4)
        took = time.monotonic() - started
        code = failed.value.code()
        assert code is grpc.StatusCode.UNAVAILABLE, (code, failed.value.details(), took)
    finally:
        c.restart(victim)
        c.wait_ready()


def test_deadline_exceeded_is_typed(client_cluster: LocalCluster, tmp_path: Path) -> None:
    with SyncClient(_seeds(client_cluster)) as client:
        client.register("slow/one", "sleeper")
        assert client.call("slow/one", b"whoami", idempotent=True)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.call("slow/one", b"sleep:2", timeout=0.3)
        assert time.monotonic() - started < 1.5
        assert caught.value.may_have_run


def test_chat_rooms_example(client_cluster: LocalCluster) -> None:
    seeds = [arg for s in _seeds(client_cluster, "n2") for arg in ("--seed", s)]
    argv = [sys.executable, "examples/chat_rooms/chat.py", *seeds, "--rooms", "lobby,python"]
    for _ in range(2):  # a second run finds the rooms and just adds to them
        run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        text = run.stdout
        assert "room-lobby" in text and "room-python" in text, text
        assert "people per room (multi_call): {'room-lobby': 2, 'room-python': 3}" in text, text
    with SyncClient(_seeds(client_cluster)) as client:
        where = client.whereis("room-python")
        assert where is not None and where.kind == "room"
        assert f"{where.node} " in text and str(where.token) in text


def test_no_quorum_is_typed(tmp_path: Path) -> None:
    lone = LocalCluster(tmp_path, 3, preset="local")
    try:
        lone.start_node("n1")  # n2 and n3 never start: 1 of 3 voters
        wait_for("n1 to serve", lambda: lone.status("n1"), 15)

        async def main() -> None:
            async with Client(_seeds(lone, "n1")) as client:
                status = await client.cluster()  # G6: status is still served
                assert not status.quorum
                with pytest.raises(NoQuorum, match="no quorum") as caught:
                    await client.register("lonely", "counter", timeout=1.0)
                assert not caught.value.may_have_run
                assert isinstance(caught.value, Unavailable)
                assert isinstance(caught.value, RegistryError)

        asyncio.run(main())
    finally:
        if lone.nodes["n1"].running:
            lone.kill("n1")  # a graceful stop would wait for a drain that cannot commit
        lone.close()
