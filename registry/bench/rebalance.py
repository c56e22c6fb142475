"""Rebalance after a node joins, and heal after a paused node comes back.

The join is the documented way to scale out (docs/operations.md, DESIGN §3: a cluster
has 3–5 voters and any number of learner members): a fresh node starts with
``--learner`` and the leader's ``Admin.MemberAdd`` adds it. It is not promoted: a fourth
voter adds no fault tolerance (a quorum of 4 is 3) and makes every commit wait for one
more process. Once its member lease holds, it joins the view with ``MemberUp`` and the
ring gives it its share of names; each moves by handoff through the log.

Rebalance time runs from the poll that first sees the new node up in the leader's view
(``join``; the spawn-to-join time is reported apart, it is mostly Python start-up) until
the per-member holder counts of the leader's ``ClusterStatus`` equal the counts placement
predicts over the full view; an exact check then lists every name and compares its holder
with its owner (``registry.core.placement``, the same pure function the nodes use). Polls
are every ``POLL_S`` seconds, so figures are that coarse.

Heal: there are no network namespaces here, so the "minority partition" is a paused node
(``SIGSTOP``): a minority of one that stops answering without closing connections. The
bench pauses a voter follower that holds names (``heal``), waits until they failed over,
resumes it (``SIGCONT``) and times from the resume until every name is back at its owner.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from dataclasses import dataclass

import grpc

from registry.bench.clusters import (
    READY_TIMEOUT_S,
    Churn,
    leader_status,
    seeds,
    wait_names,
    wait_whole,
)
from registry.bench.load import Progress, run_lanes
from registry.bench.params import Params
from registry.bench.results import SectionResult, Target
from registry.bench.writes import Settled, settle
from registry.client import Client, Registration
from registry.core.commands import NameSpec
from registry.core.placement import Candidate, Placement
from registry.testing.local_cluster import LocalCluster, Timeout, wait_for
from registry.v1 import admin_pb2 as apb
from registry.v1 import registry_pb2 as pb
from registry.v1.admin_pb2_grpc import AdminStub

PREFIX = "bench/rebalance/"
KIND = "echo"
POLL_S = 0.1
CONVERGE_MIN_S = 300.0
CONVERGE_PER_NAME_S = 0.01
"""Bounds on convergence: 300 s, or 10 ms per name (1000 s for 100k) if longer."""
TARGET_S_PER_100K = 10.0


def converge_timeout(names: int) -> float:
    return max(CONVERGE_MIN_S, names * CONVERGE_PER_NAME_S)


@dataclass(frozen=True, slots=True)
class Converged:
    at: float
    """``time.monotonic()`` of the poll whose counts matched (then checked exactly)."""
    polls: int


def expected_owners(names: list[str], up: list[str]) -> dict[str, str]:
    members = {n: Candidate(node=n, roles=frozenset(), kinds=frozenset(), up=True) for n in up}
    placement = Placement()
    out = {}
    for name in names:
        owner = placement.owner(NameSpec(name=name, kind=KIND), members, 1)
        assert owner is not None
        out[name] = owner
    return out


def _mismatches(c: LocalCluster, want: dict[str, str], limit: int) -> list[str]:
    leader = leader_status(c).leader
    if not leader:
        return ["no leader"]
    reply = c.stub(leader).List(pb.ListRequest(prefix=PREFIX, limit=limit + 1), timeout=60)
    held = {loc.name: loc.node for loc in reply.locations}
    wrong = [
        f"{n}: held by {held.get(n) or '-'}, owner {o}" for n, o in want.items() if held.get(n) != o
    ]
    return wrong


def wait_converged(
    c: LocalCluster,
    want: dict[str, str],
    progress: Progress,
    *,
    require_up: str,
) -> Converged:
    """Poll until the leader's holder counts equal ``want``'s and ``require_up`` is up,
    then confirm name by name (see the module docstring)."""
    counts = collections.Counter(want.values())
    limit = converge_timeout(len(want))
    deadline = time.monotonic() + limit
    polls = 0
    while True:
        polls += 1
        now = time.monotonic()
        try:
            s = leader_status(c)
        except Exception as exc:  # a leader change or a slow answer: poll again
            progress.waiting(f"no status ({exc.__class__.__name__})")
            s = None
        if s is not None:
            up = {m.id for m in s.members if m.up}
            have = {m.id: m.activations for m in s.members}
            if require_up in up and all(have.get(n, 0) == k for n, k in counts.items()):
                try:
                    wrong = _mismatches(c, want, len(want))
                except Exception as exc:  # the leader changed under the listing
                    wrong = [f"listing failed: {exc.__class__.__name__}"]
                if not wrong:
                    return Converged(at=now, polls=polls)
                progress.say(f"counts match but {len(wrong)} names differ, e.g. {wrong[:2]}")
            else:
                progress.waiting(
                    f"holders {dict(sorted(have.items()))}, want {dict(sorted(counts.items()))}"
                )
        if now > deadline:
            raise Timeout(f"names not at their owners after {limit:g} s")
        time.sleep(POLL_S)


def _add_learner(c: LocalCluster, node: str, progress: Progress) -> None:
    """Start ``node`` fresh and add it as a learner through the leader (retried while
    the leader changes or the new node's peer port is not up yet)."""
    proc = c.add_node(node)
    c.start_node(node)
    request = apb.MemberAddRequest(id=node, address=proc.grpc_addr, peer_address=c.peer_addr[node])

    def added() -> bool:
        try:
            leader = leader_status(c).leader
            AdminStub(c.channel(leader)).MemberAdd(request, timeout=10)
        except grpc.RpcError as exc:
            progress.waiting(f"MemberAdd {node}: {exc.code().name} {exc.details()}")
            return False
        return True

    wait_for(f"{node} added", added, READY_TIMEOUT_S, interval=POLL_S)


def _wait_member(c: LocalCluster, node: str, up: bool, progress: Progress) -> float:
    deadline = time.monotonic() + CONVERGE_MIN_S
    while True:
        now = time.monotonic()
        try:
            members = {m.id: m.up for m in leader_status(c).members}
        except Exception as exc:
            progress.waiting(f"no status ({exc.__class__.__name__})")
            members = {}
        if members.get(node, False) == up:
            return now
        if now > deadline:
            raise Timeout(f"{node} not {'up' if up else 'down'} in the view")
        progress.waiting(f"waiting for {node} to be {'up' if up else 'down'}")
        time.sleep(POLL_S)


async def register(c: LocalCluster, params: Params, progress: Progress) -> float:
    """Register the rebalance names (batched); returns names per second."""
    n = params.names
    progress.step(f"rebalance: registering {n:,} names on {len(c.running_ids())} nodes")
    async with Client(seeds(c), cache=False, timeout=120.0) as client:

        async def many(b: int) -> None:
            first = b * params.batch
            last = min(first + params.batch, n)
            specs = [Registration(f"{PREFIX}{i}", KIND) for i in range(first, last)]
            await settle(lambda: client.register_many(specs), Settled())

        batches = (n + params.batch - 1) // params.batch
        row = await run_lanes(
            many, batches, params.batch_concurrency, progress, "names", weight=params.batch
        )
    wait_names(c, n, converge_timeout(n), progress)
    return n / row.wall_s


def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    """``c``: the voters, holding the names ``register`` put there. A new node joins
    as a learner (see the module docstring)."""
    n = params.names
    names = [f"{PREFIX}{i}" for i in range(n)]
    joiner = f"n{len(c.ids) + 1}"
    before = expected_owners(names, c.ids)
    want = expected_owners(names, [*c.ids, joiner])
    moved = sum(1 for name in names if before[name] != want[name])

    progress.step(
        f"rebalance: {joiner} joins as a learner; {moved:,} of {n:,} names should move to it"
    )
    churn_before = Churn.read(c)
    spawned = time.monotonic()
    _add_learner(c, joiner, progress)
    joined = _wait_member(c, joiner, True, progress)
    done = wait_converged(c, want, progress, require_up=joiner)
    rebalance_s = done.at - joined
    # The join is no fault: it must cost no election and no fence. (The section's own
    # counts below include the heal, which pauses a node on purpose.)
    terms, fences = Churn.read(c).since(churn_before)
    quiet = Target(op="<=", bound=0, note="a node joining is no fault")
    out.add("join_term_changes", "raft term changes during the join", terms, "terms", target=quiet)
    out.add("join_fences", "fences during the join", fences, "fences", target=quiet)
    target_s = TARGET_S_PER_100K * n / 100_000
    out.add(
        "rebalance_s",
        f"rebalance {n:,} names onto a joining node",
        rebalance_s,
        "s",
        target=Target(
            op="<=",
            bound=target_s,
            note="10 s per 100k names" + ("" if n == 100_000 else f", scaled to {n:,}"),
        ),
        note=f"{moved:,} names moved; from MemberUp to every name at its owner",
    )
    out.add("moved_per_s", "names moved per second (rebalance)", moved / rebalance_s, "names/s")
    out.details.update(
        names=n,
        moved=moved,
        joiner=joiner,
        joiner_kind="learner (started with --learner, added by Admin.MemberAdd)",
        spawn_to_join_s=round(joined - spawned, 3),
        join_to_converged_s=round(rebalance_s, 4),
        polls=done.polls,
        poll_s=POLL_S,
    )
    heal(c, want, [n for n in c.ids if n != joiner], progress, out)


def heal(
    c: LocalCluster,
    want: dict[str, str],
    voters: list[str],
    progress: Progress,
    out: SectionResult,
) -> None:
    """Pause a *voter* follower that holds names: the remaining voters are then all the
    quorum there is, so a slow one costs the leader its lease (the harder case than
    pausing the learner, which leaves the quorum whole)."""
    wait_whole(c, c.ids, 60)
    status = leader_status(c)
    held = {m.id: m.activations for m in status.members}
    followers = [n for n in reversed(voters) if n != status.leader and held.get(n, 0) > 0]
    victim = followers[0]
    node = c.nodes[victim]
    assert node.proc is not None
    pid = node.proc.pid
    churn_before = Churn.read(c)  # read now: a paused node answers nothing
    progress.step(f"heal: pausing {victim} (SIGSTOP), {held[victim]:,} names on it")
    paused = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        down = _wait_member(c, victim, False, progress)
        others = [n for n in c.ids if n != victim]
        failed_over = wait_converged(
            c, expected_owners(list(want), others), progress, require_up=others[0]
        )
    finally:
        resumed = time.monotonic()
        os.kill(pid, signal.SIGCONT)
    progress.step(f"heal: resumed {victim} (SIGCONT); waiting for its names to come back")
    healed = wait_converged(c, want, progress, require_up=victim)
    heal_s = healed.at - resumed
    # The paused node must fence (its lease ran out while it was stopped: G1); nobody
    # else should, and one paused voter of three leaves a quorum, so no election either.
    churn = Churn.read(c)
    terms, fences = churn.since(churn_before, excluding=victim)
    _, own = churn.since(churn_before)
    quiet = Target(op="<=", bound=0, note="a paused minority of one is no fault of the rest")
    out.add("heal_term_changes", "raft term changes during the heal", terms, "terms", target=quiet)
    out.add(
        "heal_fences_elsewhere",
        "fences during the heal, on the nodes not paused",
        fences,
        "fences",
        target=quiet,
    )
    out.add(
        "heal_s",
        "heal: every name at its owner after a paused node resumes",
        heal_s,
        "s",
        note="minority of one paused with SIGSTOP, not a network partition",
    )
    out.details["heal"] = {
        "victim": victim,
        "names_on_victim": held[victim],
        "pause_to_down_s": round(down - paused, 3),
        "pause_to_failed_over_s": round(failed_over.at - paused, 3),
        "resume_to_converged_s": round(heal_s, 4),
        "fences_of_victim": own - fences,
        "method": "SIGSTOP/SIGCONT of one voter follower (a minority of one)",
    }
