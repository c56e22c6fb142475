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

import grpc
from uhashring import HashRing

from registry.core.placement import DEFAULT_VNODES
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until

ROUNDS = 3


def _name_owned_by(node: str, ids: list[str], prefix: str) -> str:
    """A name whose ring owner (all nodes up, no roles) is ``node``."""
    ring = HashRing(nodes=sorted(ids), hash_fn="ketama", vnodes=DEFAULT_VNODES)
    return next(n for i in range(1000) if ring.get_node(n := f"{prefix}{i}") == node)


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
