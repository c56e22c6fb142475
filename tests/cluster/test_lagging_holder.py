"""A registration acknowledged through one node, called at once through that node while
the name's holder has not applied it yet: the call must not answer NOT_FOUND (the
"acknowledged write answered NOT_FOUND" of tests/cluster/test_minority.py). The holder is
made to lag by a SIGSTOP: the write commits on the other two, the call is forwarded to
the frozen holder, and the holder resumes with both the call and the log entries queued.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until
from tests.cluster.slow_disk import SlowDiskCluster, names_owned_by

ROUNDS = 3
SLOW_PERSIST_S = 0.6
"""Longer than ``wait_for``'s 0.25 s poll: a forward that waits for the registration to
appear sees it inside the window, not only after the activation started."""
LOOKUP_LAG_S = 0.4
"""A write reaches the lagging node's state machine 0.4–0.8 s after its acknowledgement:
the lookup sent right after it comes first."""


def _name_owned_by(node: str, ids: list[str], prefix: str) -> str:
    return next(names_owned_by(node, ids, prefix))


def test_call_through_the_acknowledging_node_while_the_holder_lags(
    cluster: LocalCluster,
) -> None:
    leader = cluster.wait_ready()
    via = leader
    holder = next(n for n in cluster.ids if n != leader)
    pid = cluster.nodes[holder].proc.pid  # type: ignore[union-attr]
    for k in range(ROUNDS):
        name = _name_owned_by(holder, cluster.ids, f"lag/{k}/")
        os.kill(pid, signal.SIGSTOP)
        try:
            cluster.stub(via).Register(
                pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")), timeout=5
            )
            # Acknowledged: read your writes through the same node.
            where = cluster.stub(via).WhereIs(pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S)
            assert where.location.name == name or where.waiting
            answers: list[object] = []

            def call(name: str = name, answers: list[object] = answers) -> None:
                try:
                    answers.append(
                        cluster.stub(via).Call(
                            pb.CallRequest(name=name, payload=b"hi"), timeout=RPC_TIMEOUT_S
                        )
                    )
                except grpc.RpcError as exc:
                    answers.append(exc.code())

            caller = threading.Thread(target=call)
            caller.start()
            time.sleep(0.1)  # the pause's length: the call is queued at the frozen holder
        finally:
            os.kill(pid, signal.SIGCONT)
        caller.join(RPC_TIMEOUT_S + 5)
        [answer] = answers
        assert answer is not grpc.StatusCode.NOT_FOUND, (
            f"round {k}: {name!r} was acknowledged through {via}, yet a call through it "
            "answered NOT_FOUND"
        )
        assert call_until(cluster, via, name, b"hi", timeout=5).payload == b"hi"


def test_call_forwarded_while_the_holder_starts_what_it_just_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder has applied the registration (its state names it the holder) but not
    yet started the activation: a Ready starts its activations only after its persist
    (``ReadyLoop`` rule 1). A call forwarded to it then waits for the start instead of
    being refused "not running on this node" (CI saw it once on a loaded machine). The
    holder's persists are made slow (``REGISTRY_FAULT_SLOW_PERSIST``) so that every
    round falls in that window; nothing else is changed."""
    slow = SlowDiskCluster(tmp_path, monkeypatch, preset="lan", delay_s=SLOW_PERSIST_S)
    c = slow.cluster
    try:
        leader = c.wait_ready()
        holder, forwarder = (n for n in c.ids if n != leader)
        for k in range(ROUNDS):
            name = _name_owned_by(holder, c.ids, f"starting/{k}/")
            slow.stall(holder)
            try:
                c.stub(leader).Register(
                    pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")), timeout=5
                )
                try:
                    reply = c.stub(forwarder).Call(
                        pb.CallRequest(name=name, payload=b"hi"), timeout=RPC_TIMEOUT_S
                    )
                except grpc.RpcError as exc:
                    raise AssertionError(
                        f"round {k}: a call to {name!r} on {holder}, which had applied it, "
                        f"was refused: {exc.code()} {exc.details()}"
                    ) from None
            finally:
                slow.unstall(holder)
            assert (reply.node, reply.payload) == (holder, b"hi")
    finally:
        c.close()


def test_a_lookup_through_a_lagging_node_does_not_deny_an_acknowledged_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WhereIs`` (not ``consistent``) answers from the local replica, which may lag —
    but ``NOT_FOUND`` only once a ReadIndex round shows the name is not registered
    cluster-wide, as a call does. A client that registered through the leader and then
    looked the name up through a lagging follower was told it did not exist (CI saw it
    once). The follower's persists are made slow, so it applies each write late."""
    slow = SlowDiskCluster(tmp_path, monkeypatch, preset="lan", delay_s=LOOKUP_LAG_S)
    c = slow.cluster
    try:
        leader = c.wait_ready()
        lagging = next(n for n in c.ids if n != leader)
        slow.stall(lagging)
        try:
            for k in range(ROUNDS):
                name = f"lookup/{k}"
                spec = pb.NameSpec(name=name, kind="echo")
                c.stub(leader).Register(pb.RegisterRequest(spec=spec), timeout=5)
                try:
                    reply = c.stub(lagging).WhereIs(
                        pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S
                    )
                except grpc.RpcError as exc:
                    raise AssertionError(
                        f"round {k}: {name!r}, acknowledged by {leader}, looked up through "
                        f"{lagging}: {exc.code()} {exc.details()}"
                    ) from None
                assert reply.location.name == name or reply.waiting
        finally:
            slow.unstall(lagging)
    finally:
        c.close()
