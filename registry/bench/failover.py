"""Failover time after ``kill -9`` of an owner (G4, DESIGN §5), on its own cluster.

Registers ``SPREAD`` counters, then ``failover_runs`` times: picks a counter — on odd
runs one whose owner also leads the Raft group (the slow case: an election, then the new
leader waits ``down_after`` before declaring anybody down), on even runs one owned by a
follower — ``kill -9``s its owner and measures the time from the kill until
``call(name, "get")`` sent to a survivor answers from another node. Then it restarts the
killed node with its data directory and waits until the cluster is whole again before the
next run.

The clock starts just before SIGKILL and stops when the reply arrives, so a figure
includes detection (``down_after``), the election when the owner also led, the commit of
the new placement, the worker's start, and one poll interval (``POLL_S``). The ≤ 3 s
target is for the ``lan`` preset.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial

import grpc

from registry.bench.load import Progress
from registry.bench.params import Params
from registry.bench.results import SectionResult, Target
from registry.core.timing import PRESETS
from registry.testing.local_cluster import LocalCluster, Timeout, wait_for
from registry.v1 import registry_pb2 as pb

PREFIX = "bench/failover/"
SPREAD = 8
"""Counters registered, so that every node owns some and the leader case can be chosen."""
TARGET_S = 3.0
POLL_S = 0.01
RUN_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Run:
    run: int
    name: str
    killed: str
    killed_was_leader: bool
    new_owner: str
    old_token: int
    new_token: int
    failover_s: float


def _get(c: LocalCluster, via: str, name: str) -> pb.CallResponse:
    reply: pb.CallResponse = c.stub(via).Call(
        pb.CallRequest(name=name, payload=b"get"), timeout=1.0
    )
    return reply


def _pick(c: LocalCluster, names: list[str], run: int) -> str:
    """A counter owned by the leader on odd runs and by a follower on even ones (the
    other kind when no counter qualifies: the ring decides where counters land)."""
    leader = c.wait_ready(timeout=60)
    want_leader = run % 2 == 1
    owners = {name: c.owner(name)[0] for name in names}
    for name in names:
        if (owners[name] == leader) == want_leader:
            return name
    return names[0]


def failover_once(c: LocalCluster, name: str, run: int) -> Run:
    owner, token = c.owner(name)
    leader = c.status(owner).leader
    survivor = next(n for n in c.ids if n != owner)
    stub = c.stub(survivor)
    request = pb.CallRequest(name=name, payload=b"get")

    killed_at = time.monotonic()
    c.kill(owner)
    deadline = killed_at + RUN_TIMEOUT_S
    while True:
        try:
            reply = stub.Call(request, timeout=1.0)
            if reply.node != owner:
                break
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        if time.monotonic() > deadline:
            raise Timeout(f"run {run}: {name} did not answer elsewhere within {RUN_TIMEOUT_S} s")
        time.sleep(POLL_S)
    elapsed = time.monotonic() - killed_at

    c.restart(owner)
    c.wait_ready(timeout=60)
    # The name may move back to the restarted node (a handoff): wait until it answers.
    wait_for(f"{name} to answer after {owner} rejoined", partial(_get, c, survivor, name), 30)
    return Run(
        run=run,
        name=name,
        killed=owner,
        killed_was_leader=owner == leader,
        new_owner=reply.node,
        old_token=token,
        new_token=reply.token,
        failover_s=elapsed,
    )


def _stats(times: list[float]) -> dict[str, float]:
    return {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times)}


def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    timing = PRESETS[c.preset]
    names = [f"{PREFIX}{i}" for i in range(SPREAD)]
    leader = c.wait_ready(timeout=60)
    c.stub(leader).RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="counter") for n in names]),
        timeout=10,
    )
    for name in names:
        wait_for(f"{name} to answer", partial(_get, c, leader, name), timeout=30)
    runs: list[Run] = []
    progress.step(f"failover: {params.failover_runs} kill -9 runs (preset {c.preset})")
    for i in range(1, params.failover_runs + 1):
        r = failover_once(c, _pick(c, names, i), i)
        runs.append(r)
        role = "leader" if r.killed_was_leader else "follower"
        progress.say(
            f"failover run {i}: killed {r.killed} ({role}), {r.name} answered from "
            f"{r.new_owner} after {r.failover_s:.3f} s"
        )
    times = [r.failover_s for r in runs]
    s = _stats(times)
    lan = c.preset == "lan"
    target = Target(op="<=", bound=TARGET_S) if lan else None
    note = "" if lan else f"preset {c.preset}: the 3 s target is for lan"
    out.add("min_s", f"failover min ({len(runs)} runs)", s["min_s"], "s")
    out.add("median_s", "failover median", s["median_s"], "s")
    out.add("max_s", "failover max", s["max_s"], "s", target=target, note=note)
    by_case: dict[str, dict[str, float]] = {}
    for label, was_leader in (("owner_led", True), ("owner_followed", False)):
        subset = [r.failover_s for r in runs if r.killed_was_leader == was_leader]
        if subset:
            by_case[label] = {"runs": len(subset), **_stats(subset)}
    out.details.update(
        preset=c.preset,
        lease_s=timing.lease,
        down_after_s=timing.effective_down_after(),
        election_timeout_s=timing.election_timeout,
        per_run_s=times,
        by_case=by_case,
        runs=[asdict(r) for r in runs],
    )
