"""The seed's own story: a dist_ac user's name with priority ``a;b``.

It runs on a. When a is cut off it must fail over to b; when the link heals, a must
take it back (takeover, by handoff, with its state) — again and again, with nobody
restarting anything, and it must never run on both.
"""

from __future__ import annotations

from collections.abc import Callable

from registry.testing.netns import cut
from tests.partition.support import Live, Scenario

CYCLES = 3


def on(node: str, name: str) -> Callable[[Live], bool]:
    """The condition: ``name`` runs exactly once, on ``node``."""

    def cond(live: Live) -> bool:
        return [act[0] for act in live.get(name, [])] == [node]

    return cond


def test_priority_failover_and_takeover_repeatedly(scenario3: Scenario) -> None:
    s = scenario3
    a, b, c = s.cluster.ids
    name = "dist-ac-job"
    s.register([{"name": name, "kind": "ledger", "priority": [[a], [b]]}])
    s.register_names(20)  # company for it, on the ring
    s.wait_live(f"{name} to run on {a}", on(a, name), 10.0)
    pids = {n: node.pid for n, node in s.cluster.nodes.items()}
    for cycle in range(CYCLES):
        with s.partition("isolate", cut([a], [b, c]), [a]) as fid:
            s.wait_live(
                f"cycle {cycle}: {name} to fail over to {b}",
                on(b, name),
                s.down_after + 5.0,
            )
        s.converge(fid)
        s.wait_live(f"cycle {cycle}: {a} to take {name} back", on(a, name), 10.0)
    # Nobody restarted anything: the same processes ran throughout.
    assert {n: node.pid for n, node in s.cluster.nodes.items()} == pids
    report = s.verify()  # never on both (G1), tokens, state of every handoff start (G5)
    assert report.duplicates == 0
    took_over = s.query(
        "SELECT reason, state_in IS NOT NULL FROM activations WHERE name = ? AND node = ? "
        "ORDER BY called_t",
        name,
        a,
    )[1:]
    failed_over = s.query("SELECT reason FROM activations WHERE name = ? AND node = ?", name, b)
    assert [r[0] for r in failed_over] == ["failover"] * CYCLES
    assert len(took_over) >= CYCLES
    # Every takeover is a handoff with b's state. (It was not, until the leader stopped
    # bringing a's old incarnation back up on heartbeats queued during the cut: the next
    # MemberUp then failed the name over and dropped the state.)
    assert all(r == ("handoff", 1) for r in took_over), f"takeover without b's state: {took_over}"
