"""Failover time with real node processes on loopback, not a test (G4, DESIGN §5).

    .venv/bin/python scripts/bench_failover.py [--preset lan] [--runs 10] [--json out.json]

Starts a 3-node cluster (the same harness as ``tests/cluster``), registers a counter,
then ``--runs`` times: finds the counter's owner, ``kill -9``s it, and measures the time
from the kill until ``call(name, "get")`` sent to a survivor answers from another node;
then restarts the killed node with its data directory and waits until the cluster is
whole again (one leader, every node holding a lease, every member up) before the next
run. Prints each run and min/median/max; ``--json`` also writes them to a file.

With ``--alternate`` it registers several counters and, on every other run, kills the
owner that is also the Raft leader (the slow case: an election, then a new leader waits
``down_after`` before declaring anybody down), so both cases are measured.

The clock starts just before SIGKILL is sent and stops when the reply arrives, so a
figure includes detection (``down_after``), the election when the owner also led the
cluster, the commit of the new placement, the worker's start, and one poll interval
(``--poll``, default 10 ms).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.core.timing import PRESETS
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, Timeout, wait_for

NAME = "bench/failover"
SPREAD = 8
"""Counters registered with ``--alternate`` so that every node owns some."""
TARGET_S = 3.0


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


def get(c: LocalCluster, via: str, name: str) -> pb.CallResponse:
    reply: pb.CallResponse = c.stub(via).Call(
        pb.CallRequest(name=name, payload=b"get"), timeout=1.0
    )
    return reply


def pick(c: LocalCluster, names: list[str], run: int, alternate: bool) -> str:
    """The name whose owner to kill: with ``alternate``, one owned by the leader on even
    runs and by a follower on odd ones (the first that qualifies)."""
    if not alternate:
        return names[0]
    leader = c.wait_ready(timeout=30)
    want_leader = run % 2 == 0
    for name in names:
        if (c.owner(name)[0] == leader) == want_leader:
            return name
    raise AssertionError(f"no counter is owned by {'the' if want_leader else 'a non-'}leader")


def failover_once(c: LocalCluster, name: str, run: int, timeout: float, poll: float) -> Run:
    owner, token = c.owner(name)
    leader = c.status(owner).leader
    survivor = next(n for n in c.ids if n != owner)
    stub = c.stub(survivor)
    request = pb.CallRequest(name=name, payload=b"get")

    killed_at = time.monotonic()
    c.kill(owner)
    deadline = killed_at + timeout
    while True:
        try:
            reply = stub.Call(request, timeout=1.0)
            if reply.node != owner:
                break
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        if time.monotonic() > deadline:
            raise Timeout(f"run {run}: {name} did not answer elsewhere within {timeout} s")
        time.sleep(poll)
    elapsed = time.monotonic() - killed_at

    c.restart(owner)
    c.wait_ready(timeout=60)
    # The name may move back to the restarted node (a handoff): wait until it answers.
    wait_for(f"{name} to answer after {owner} rejoined", partial(get, c, survivor, name), 30)
    return Run(
        run=run,
        name=name,
        killed=owner,
        killed_was_leader=owner == leader,
        new_owner=reply.node,
        old_token=token,
        new_token=reply.token,
        failover_s=round(elapsed, 4),
    )


def stats(times: list[float]) -> dict[str, float]:
    return {
        "min_s": min(times),
        "median_s": round(statistics.median(times), 4),
        "max_s": max(times),
    }


def line(times: list[float]) -> str:
    s = stats(times)
    return f"min {s['min_s']:.3f} s, median {s['median_s']:.3f} s, max {s['max_s']:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="lan", choices=sorted(PRESETS))
    parser.add_argument("--runs", type=int, default=10, help="kill/measure/restart rounds")
    parser.add_argument("--timeout", type=float, default=60.0, help="per failover, seconds")
    parser.add_argument("--poll", type=float, default=0.01, help="call interval, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and node logs")
    parser.add_argument(
        "--alternate",
        action="store_true",
        help="every other run, kill an owner that is also the leader",
    )
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    timing = PRESETS[args.preset]
    print(
        f"preset {args.preset}: lease {timing.lease} s, down_after "
        f"{timing.effective_down_after():.2f} s, election timeout {timing.election_timeout} s"
    )
    runs: list[Run] = []
    cluster = LocalCluster(root, 3, preset=args.preset)
    try:
        leader = cluster.start(timeout=60)
        print(f"cluster up, leader {leader}; data and logs in {root}")
        names = [f"{NAME}/{i}" for i in range(SPREAD if args.alternate else 1)]
        cluster.stub(leader).RegisterMany(
            pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="counter") for n in names]),
            timeout=10,
        )
        for name in names:
            wait_for(f"{name} to answer", partial(get, cluster, leader, name), timeout=10)
        print(f"{'run':>3}  {'killed':6} {'leader?':7} {'now on':6} {'token':>11}  failover")
        for i in range(1, args.runs + 1):
            name = pick(cluster, names, i, args.alternate)
            r = failover_once(cluster, name, i, args.timeout, args.poll)
            runs.append(r)
            print(
                f"{r.run:>3}  {r.killed:6} {'yes' if r.killed_was_leader else 'no':7} "
                f"{r.new_owner:6} {f'{r.old_token}→{r.new_token}':>11}  {r.failover_s:.3f} s",
                flush=True,
            )
    except BaseException:
        print(cluster.log_tails(40), file=sys.stderr)
        raise
    finally:
        cluster.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    times = [r.failover_s for r in runs]
    summary: dict[str, object] = {
        "preset": args.preset,
        "runs": len(runs),
        **stats(times),
        "target_s": TARGET_S,
        "per_run_s": times,
        "details": [asdict(r) for r in runs],
    }
    print(
        f"failover (kill -9 → answering elsewhere), {len(runs)} runs, preset {args.preset}: "
        f"{line(times)} (target ≤ {TARGET_S} s)"
    )
    if args.alternate:
        for label, was_leader in (("owner led", True), ("owner followed", False)):
            subset = [r.failover_s for r in runs if r.killed_was_leader == was_leader]
            if subset:
                summary[label.replace(" ", "_")] = stats(subset)
                print(f"  {label}: {len(subset)} runs, {line(subset)}")
    print("per run:", ", ".join(f"{t:.3f}" for t in times))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
