"""Writes through the survivors while the leader is ``kill -9``'d (G6 with real processes).

Until a new leader holds its lease a survivor refuses writes, and each refusal must say
why truthfully and be safe to retry: UNAVAILABLE with "no leader ..." while the election
runs, "leader … is unreachable" for a forward the dead leader never received, "the
connection to leader … broke after the request was sent … it may have been applied" for
a forward on a connection the kill reset (the survivor cannot know whether the leader
took it), and "no quorum: k of n voters reachable" only when k is below a quorum. Once
the survivors agree on a new leader, writes succeed again within a bound.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, wait_for

RECOVERY_BOUND_S = 10.0
"""From the new leader's election to a write accepted at each survivor: ~50× the local
preset's election timeout, generous because CI machines stall."""
WRITE_TIMEOUT_S = 5.0
GONE = re.compile(r"^leader n\d at [\d.:]+ is unreachable \(failed to connect")
"""A forward the old leader never received (refused connection): safe to retry."""
LOST = re.compile(
    r"^the connection to leader n\d at [\d.:]+ broke after the request was sent .*"
    r"it may have been applied"
)
"""A forward on a connection the kill reset: the node cannot know whether the old leader
took it, and says so."""
PACE_S = 0.02
"""Between writes through one survivor; ``FAST_PACE_S`` from the kill on, so that some
arrive in the short gap while the survivors know no leader."""
FAST_PACE_S = 0.002
MAX_WRITES = 5000
"""Per writer: bounds the loop even if the stop signal never comes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    node: str
    sent: float
    done: float
    code: grpc.StatusCode
    details: str


class Writer(threading.Thread):
    """Sends a Register of a fresh name through one node every ``pace`` seconds without
    waiting for the answers (so some arrive mid-election), recording every answer."""

    def __init__(self, c: LocalCluster, node: str) -> None:
        super().__init__(daemon=True)
        self.stub = c.stub(node)
        self.node = node
        self.outcomes: list[Outcome] = []
        self.futures: list[grpc.Future[pb.RegisterResponse]] = []
        self.halt = threading.Event()
        self.pace = PACE_S

    def run(self) -> None:
        for i in range(MAX_WRITES):
            if self.halt.wait(self.pace):
                return
            spec = pb.NameSpec(name=f"loss/{self.node}/{i}", kind="counter")
            future = self.stub.Register.future(
                pb.RegisterRequest(spec=spec), timeout=WRITE_TIMEOUT_S
            )
            future.add_done_callback(functools.partial(self._record, time.monotonic()))
            self.futures.append(future)

    def _record(self, sent: float, call: grpc.Future[pb.RegisterResponse]) -> None:
        code, details = call.code(), call.details() or ""  # type: ignore[attr-defined]
        self.outcomes.append(
            Outcome(node=self.node, sent=sent, done=time.monotonic(), code=code, details=details)
        )

    def finish(self) -> None:
        self.halt.set()
        self.join(WRITE_TIMEOUT_S)
        for future in self.futures:
            future.exception(WRITE_TIMEOUT_S + 5)  # every answer is in

    def acked_after(self, t: float) -> int:
        return sum(1 for o in list(self.outcomes) if o.code is grpc.StatusCode.OK and o.sent >= t)


def untruthful(o: Outcome, quorum: int) -> str | None:
    """Why the refusal ``o`` is not a truthful, retryable one (None: it is)."""
    if o.code is grpc.StatusCode.RESOURCE_EXHAUSTED and o.details.startswith("node busy:"):
        # Writes sent every 2 ms pile up while no leader answers: past the per-client
        # concurrency bound (max_rpcs_per_client) the node says so, which is also true.
        return None
    if o.code is not grpc.StatusCode.UNAVAILABLE:
        return "not UNAVAILABLE"
    counted = re.search(r"no quorum: (\d+) of (\d+) voters reachable", o.details)
    if counted and int(counted[1]) >= quorum:
        return "claims no quorum while a quorum is reachable"
    named = (GONE.search(o.details), LOST.search(o.details))
    if not (counted or "no leader yet" in o.details or any(named)):
        return "names no reason a client can act on"
    return None


def test_writes_refused_truthfully_while_a_new_leader_is_elected(
    cluster: LocalCluster, record_property: Callable[[str, object], None]
) -> None:
    c = cluster
    leader = c.wait_ready()
    survivors = [n for n in c.ids if n != leader]
    writers = [Writer(c, n) for n in survivors]
    for w in writers:
        w.start()
    try:
        wait_for(
            "writes through both survivors",
            lambda: all(w.acked_after(0) >= 20 for w in writers),
            20,
        )
        for w in writers:
            w.pace = FAST_PACE_S
        c.kill(leader)  # returns once it is reaped: later forwards cannot reach it
        killed_at = time.monotonic()
        new = wait_for("a new leader both survivors see", lambda: _leader(c, survivors), 20)
        elected_at = time.monotonic()
        wait_for(
            "a write accepted through each survivor after the election",
            lambda: all(w.acked_after(elected_at) for w in writers),
            RECOVERY_BOUND_S,
        )
    finally:
        for w in writers:
            w.finish()
    window = [o for w in writers for o in w.outcomes if o.sent >= killed_at]
    refused = [o for o in window if o.code is not grpc.StatusCode.OK]
    first_ack = min(o.done for o in window if o.code is grpc.StatusCode.OK)
    record_property(
        "leader_loss",
        f"new leader {new} elected {elected_at - killed_at:.2f} s after the kill; first write "
        f"accepted {first_ack - killed_at:.2f} s after it; {len(refused)} of {len(window)} "
        "writes refused meanwhile",
    )
    quorum = len(c.ids) // 2 + 1
    bad = [(o, why) for o in refused if (why := untruthful(o, quorum))]
    assert not bad, "\n".join(
        f"{o.node} at +{o.sent - killed_at:.2f}s: {why}: {o.code.name} {o.details!r}"
        for o, why in bad[:10]
    )


def _leader(c: LocalCluster, among: list[str]) -> str | None:
    """The leader, one of ``among``, they all know, once each of them holds its lease."""
    statuses = [c.status(n) for n in among]
    leaders = {s.leader for s in statuses}
    if len(leaders) != 1 or not leaders <= set(among) or not all(s.quorum for s in statuses):
        return None
    return leaders.pop()
