"""Groups across owners (join, members, publish, multi_call, leave) and Watch streams,
on a calm cluster (no node is stopped)."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator

import grpc
import pytest

from registry.testing.local_cluster import rpc_error
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, wait_for

Kind = pb.WatchEvent.Kind


def test_groups_span_owners(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    names = [f"grp/counter/{i}" for i in range(6)]
    group = "grp/all"
    c.stub("n1").RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="counter") for n in names]),
        timeout=5,
    )

    def members(node_id: str) -> list[str]:
        reply = c.stub(node_id).Members(pb.MembersRequest(group=group), timeout=RPC_TIMEOUT_S)
        return list(reply.names)

    wait_for("every name to be placed", lambda: all(c.owner(n)[0] for n in names), 5)
    owners = {n: c.owner(n)[0] for n in names}
    assert len(set(owners.values())) >= 2, f"the test needs names on several owners: {owners}"
    for i, name in enumerate(names):
        c.stub(c.ids[i % 3]).Join(pb.GroupRequest(group=group, name=name), timeout=5)
    wait_for(
        "every node to list the group",
        lambda: all(members(n) == sorted(names) for n in c.ids),
        timeout=5,
    )

    published = c.stub("n2").Publish(pb.PublishRequest(group=group, payload=b"incr"), timeout=5)
    assert published.delivered == len(names)

    def multi_call(via: str, payload: bytes) -> dict[str, bytes]:
        reply = c.stub(via).MultiCall(
            pb.MultiCallRequest(group=group, payload=payload, timeout_s=2.0), timeout=5
        )
        errors = {r.name: f"{r.error_code}: {r.error}" for r in reply.results if r.error_code}
        assert not errors, errors
        return {r.name: r.payload for r in reply.results}

    every_one = {n: b"1" for n in names}
    # Casts are asynchronous: wait until every counter has handled its incr.
    wait_for("every cast to arrive", lambda: multi_call("n3", b"get") == every_one, 5)
    assert multi_call("n1", b"incr") == {n: b"2" for n in names}

    c.stub("n2").Leave(pb.GroupRequest(group=group, name=names[0]), timeout=5)
    c.stub("n3").Unregister(pb.UnregisterRequest(name=names[1]), timeout=5)
    remaining = sorted(names[2:])
    wait_for(
        "every node to drop the two names from the group",
        lambda: all(members(n) == remaining for n in c.ids),
        timeout=5,
    )
    assert multi_call("n2", b"get") == {n: b"2" for n in remaining}
    # The name that left still runs, outside the group.
    assert (
        c.stub("n1")
        .Call(pb.CallRequest(name=names[0], payload=b"get"), timeout=RPC_TIMEOUT_S)
        .payload
        == b"2"
    )
    # One member whose worker fails the call: the fan-out still answers for every
    # member, that one with the status and reason a Call to it gets.
    c.stub("n1").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="grp/probe", kind="probe")), timeout=5
    )
    c.stub("n1").Join(pb.GroupRequest(group=group, name="grp/probe"), timeout=5)
    wait_for("the probe to be placed", lambda: bool(c.owner("grp/probe")[0]), 5)
    # MultiCall fans out from the serving node's own view of the group: n2 may not have
    # applied the Join yet (group commit on the leader widens that window).
    wait_for("n2 to list the probe", lambda: "grp/probe" in members("n2"), 5)
    alone = rpc_error(lambda: c.stub("n3").Call(pb.CallRequest(name="grp/probe", payload=b"get")))
    reply = c.stub("n2").MultiCall(
        pb.MultiCallRequest(group=group, payload=b"get", timeout_s=2.0), timeout=5
    )
    results = {r.name: r for r in reply.results}
    assert sorted(results) == sorted([*remaining, "grp/probe"])
    failed = results["grp/probe"]
    assert (failed.error_code, failed.error_reason) == ("ABORTED", "WORKER_ERROR"), failed
    assert "unknown question" in failed.error
    assert alone.code() is grpc.StatusCode.ABORTED and "unknown question" in (alone.details() or "")
    assert all(results[n].payload == b"2" and not results[n].error_code for n in remaining)


class _Watcher:
    """Reads a Watch stream on a thread; ``next`` takes events one by one (flattening
    the batches the node sends) with a deadline; ``messages`` counts the batches taken."""

    def __init__(self, c: LocalCluster, node_id: str, prefix: str) -> None:
        self._stream = c.stub(node_id).Watch(pb.WatchRequest(prefix=prefix), timeout=60)
        self._batches: queue.Queue[pb.WatchEvents | BaseException] = queue.Queue()
        self._pending: list[pb.WatchEvent] = []
        self.messages = 0
        """Messages whose events ``next`` has started handing out."""
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for batch in self._stream:
                self._batches.put(batch)
        except BaseException as exc:
            self._batches.put(exc)

    def next(self, timeout: float = 5.0) -> pb.WatchEvent:
        while not self._pending:
            try:
                item = self._batches.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no watch event within {timeout} s") from None
            if isinstance(item, BaseException):
                raise item
            assert item.events, "the node sent an empty WatchEvents message"
            self._pending = list(item.events)
            self.messages += 1
        return self._pending.pop(0)

    def close(self) -> None:
        self._stream.cancel()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def watcher(calm_cluster: LocalCluster) -> Iterator[_Watcher]:
    calm_cluster.stub("n1").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="watch/pre", kind="echo")), timeout=5
    )
    wait_for("n2 to apply watch/pre", lambda: calm_cluster.owner("watch/pre", via="n2"), 5)
    w = _Watcher(calm_cluster, "n2", "watch/")
    try:
        yield w
    finally:
        w.close()


def test_watch_reset_synced_placed_removed(calm_cluster: LocalCluster, watcher: _Watcher) -> None:
    c = calm_cluster
    first = watcher.next()
    assert first.kind == Kind.KIND_RESET
    listing = [watcher.next()]
    while listing[-1].kind != Kind.KIND_SYNCED:
        listing.append(watcher.next())
    assert [(e.kind, e.location.name) for e in listing[:-1]] == [(Kind.KIND_PLACED, "watch/pre")]
    assert listing[0].location.node in c.ids and listing[0].location.kind == "echo"

    c.stub("n3").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="watch/a", kind="echo")), timeout=5
    )
    c.stub("n3").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="other/a", kind="echo")), timeout=5
    )

    # watch/pre may be placed again meanwhile (a node that fenced under load rejoins):
    # such events are legitimate; only watch/a's are under test here.
    def next_about(name: str) -> pb.WatchEvent:
        event = watcher.next()
        while event.location.name != name:
            assert event.location.name == "watch/pre", event
            event = watcher.next()
        return event

    # A PLACED event may come first without a node (registered, not yet running).
    event = next_about("watch/a")
    while not event.location.node:
        assert (event.kind, event.location.name) == (Kind.KIND_PLACED, "watch/a")
        event = next_about("watch/a")
    assert (event.kind, event.location.name) == (Kind.KIND_PLACED, "watch/a")
    node, token = c.owner("watch/a")
    assert (event.location.node, event.location.token) == (node, token)
    assert event.index >= token

    c.stub("n1").Unregister(pb.UnregisterRequest(name="watch/a"), timeout=5)
    event = next_about("watch/a")
    assert (event.kind, event.location.name) == (Kind.KIND_REMOVED, "watch/a"), event
    # Nothing outside the prefix (other/a) was streamed; the stream is still open.
    # (Unregistering a running name sends REMOVED when it is unregistered and again when
    # its worker has stopped and the record is deleted: repeats are allowed.)
    c.stub("n1").Unregister(pb.UnregisterRequest(name="watch/pre"), timeout=5)
    event = watcher.next()
    while (event.kind, event.location.name) in (
        (Kind.KIND_REMOVED, "watch/a"),
        (Kind.KIND_PLACED, "watch/pre"),  # a re-placement that raced the unregister
    ):
        event = watcher.next()
    assert (event.kind, event.location.name) == (Kind.KIND_REMOVED, "watch/pre"), event


def test_watch_streams_end_cleanly_on_cancel(calm_cluster: LocalCluster) -> None:
    w = _Watcher(calm_cluster, "n1", "nothing/")
    assert w.next().kind == Kind.KIND_RESET
    assert w.next().kind == Kind.KIND_SYNCED
    w.close()
    with pytest.raises(grpc.RpcError) as info:
        while True:
            w.next(timeout=5)
    assert info.value.code() is grpc.StatusCode.CANCELLED


def test_watch_listing_travels_in_batches(cluster: LocalCluster) -> None:
    c = cluster
    names = [f"batch/list/{i:05d}" for i in range(2000)]
    reply = c.stub("n1").RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="echo") for n in names]),
        timeout=30,
    )
    wait_for(
        "n2 to apply the registration",
        lambda: c.status("n2").applied_index >= reply.index,
        timeout=30,
    )
    w = _Watcher(c, "n2", "batch/list/")
    try:
        assert w.next(timeout=30).kind == Kind.KIND_RESET
        listed = []
        event = w.next(timeout=30)
        while event.kind != Kind.KIND_SYNCED:
            assert event.kind == Kind.KIND_PLACED, event
            listed.append(event.location.name)
            event = w.next(timeout=30)
        assert sorted(listed) == names, "every name exactly once"
        # Up to 512 events a message (one message per event before batching: 2002).
        assert w.messages <= math.ceil(len(names) / 512) + 1, w.messages
    finally:
        w.close()


def test_watch_sends_one_register_many_as_one_message(
    calm_cluster: LocalCluster,
) -> None:
    c = calm_cluster
    names = [f"batch/change/{i:02d}" for i in range(20)]
    w = _Watcher(c, "n2", "batch/change/")
    try:
        assert w.next().kind == Kind.KIND_RESET
        assert w.next().kind == Kind.KIND_SYNCED
        listing_messages = w.messages
        c.stub("n1").RegisterMany(
            pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="echo") for n in names]),
            timeout=10,
        )
        first_message: dict[str, int] = {}
        running: set[str] = set()
        while running != set(names):
            event = w.next(timeout=10)
            assert event.kind == Kind.KIND_PLACED and event.location.name in names, event
            first_message.setdefault(event.location.name, w.messages)
            if event.location.node:
                running.add(event.location.name)
        # The names one log entry changed reach the subscriber together.
        assert set(first_message) == set(names)
        assert len(set(first_message.values())) == 1, first_message
        assert w.messages - listing_messages < len(names), w.messages - listing_messages
    finally:
        w.close()
