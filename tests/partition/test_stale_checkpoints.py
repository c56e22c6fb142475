"""Stale checkpoints (issue 19): an activation that lost its name goes on checkpointing
with its old token while a successor runs. Real node processes in network namespaces.

The worker (``ledger-counter``, args ``keep-trying``: ``registry.testing.ledger_worker``)
checkpoints its count on every ``incr`` and every 100 ms, and goes on after ``on_stop``
(on purpose); every attempt and its answer are in the ledger (``checkpoint_attempts``).
What was *applied* is read from the leader's committed log, replayed through the state
machine (``registry.testing.log_replay``) and judged by the simulator's checkpoint checker
(``registry.sim.cluster.durable_checkers.Checkpoints``): kept checkpoints never go back to
an older token, and a FAILOVER start resumes the last checkpoint committed before it.

What it shows: every checkpoint the old activation tries after its successor started
is refused with ``StaleToken`` — while cut off it cannot reach a leader, and after the
heal its node refuses it from its own applied state before proposing it — and none is
ever applied. A stale ``Checkpoint`` that still reached the log (a resend racing the
healed node's catch-up) must be refused by the state machine: the replay checks that too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from registry.sim.checks import judge
from registry.sim.cluster.durable_checkers import Checkpoints
from registry.testing.cluster import wait_for
from registry.testing.log_replay import Replayed, replay
from registry.testing.netns import cut
from tests.partition.support import Scenario

NAME = "durable/counter"
INCRS = 5


def _call(s: Scenario, node: str, payload: str) -> str:
    return str(s.cluster.agent.request("call", node, timeout=3.0, name=NAME, payload=payload))


def _activations(s: Scenario) -> list[tuple[int, str, str, float]]:
    """``(token, node, reason, called_t)`` of every activation of NAME, in start order."""
    rows = s.query(
        "SELECT token, node, reason, called_t FROM activations WHERE name = ? ORDER BY called_t",
        NAME,
    )
    return [(int(str(t)), str(n), str(r), float(str(c))) for t, n, r, c in rows]


def _attempts(s: Scenario, token: int, after: float) -> list[tuple[str, bool]]:
    """``(outcome, stopped)`` of the checkpoints ``token`` tried after ``after``."""
    rows = s.query(
        "SELECT outcome, stopped FROM checkpoint_attempts "
        "WHERE name = ? AND token = ? AND t_try > ? ORDER BY t_try",
        NAME,
        token,
        after,
    )
    return [(str(o), bool(st)) for o, st in rows]


def _start(s: Scenario) -> tuple[int, str]:
    """Register NAME, acknowledge ``INCRS`` increments; its first ``(token, node)``."""
    s.register([{"name": NAME, "kind": "ledger-counter", "args": "keep-trying"}])
    s.converge()
    token, holder, _, _ = _activations(s)[0]
    assert [int(_call(s, holder, "incr")) for _ in range(INCRS)] == list(range(1, INCRS + 1))
    return token, holder


def _successor(s: Scenario, old: int) -> tuple[int, str, str, float]:
    return wait_for(
        "a successor of the first activation",
        lambda: next((a for a in _activations(s) if a[0] > old), None),
        15.0,
    )


def _judge_log(s: Scenario, tmp_path: Path, old: int, successor: int) -> Replayed:
    """The committed log, replayed: no checkpoint of ``old`` was applied after the
    successor's assignment (the checker's order rule over every checkpoint), and the
    successor started from the last one committed before it. Returns the replay."""
    leader = s.cluster.leader()
    assert leader is not None
    replayed = replay(s.cluster.nodes[leader].data_dir, tmp_path)
    assert replayed.first_index == 1, "a snapshot hides the start of the log"
    stale = [c for c in replayed.checkpoints if c.token == old and c.index > successor]
    assert not any(c.accepted or c.kept_token == old for c in stale), stale
    assert judge(replayed.observations, [Checkpoints()]) == []
    before = [c for c in replayed.checkpoints if c.accepted and c.index < successor]
    assert before and before[-1].token == old and before[-1].count >= INCRS, before[-1:]
    (state_in,) = s.query(
        "SELECT state_in FROM activations WHERE name = ? AND token = ?", NAME, successor
    )[0]
    resumed = json.loads(str(state_in))
    assert resumed == {"count": before[-1].count, "writer": old}, (resumed, before[-1])
    return replayed


def test_partitioned_activation_checkpoints_are_refused_as_stale(
    scenario3: Scenario, tmp_path: Path
) -> None:
    s = scenario3
    old, holder = _start(s)
    others = [n for n in s.cluster.ids if n != holder]
    with s.partition("isolate", cut([holder], others), [holder]) as fid:
        token, node, reason, started_t = _successor(s, old)
        assert reason == "failover"
        got = _call(s, node, "get")
        counted = [int(_call(s, node, "incr")) for _ in range(3)]
        assert counted == [int(got.split(":")[0]) + i for i in (1, 2, 3)]
        # The fault's duration: the cut-off activation tries on meanwhile (every 100 ms);
        # its attempts wait, unanswered, for a commit that cannot come.
        time.sleep(1.0)
    s.converge(fid)

    # Every checkpoint the old activation tried after its successor started — while cut
    # off, and after the heal — was refused as stale: none committed, none timed out
    # (each waited, unanswered, until the healed node applied the successor's token).
    def answered() -> list[tuple[str, bool]] | None:
        attempts = _attempts(s, old, started_t)
        return attempts if len(attempts) >= 10 else None  # 1 s of partition: ~10 tries

    (stop_cause,) = s.query(
        "SELECT stop_cause FROM activations WHERE name = ? AND token = ? ORDER BY called_t",
        NAME,
        old,
    )[0]
    if stop_cause is None:
        # Its on_stop did not end within fence_grace (a loaded machine), so the control
        # process SIGKILLed its host: fenced before it could try again. Nothing it tried
        # may have been taken.
        attempts = _attempts(s, old, started_t)
        print(f"the old activation's host was killed; {len(attempts)} late attempts")
    else:
        attempts = wait_for("the healed node to answer the old activation", answered, 15.0)
        # They came from the task that outlived on_stop: the activation itself was
        # fenced (stopped when its node lost the lease) before its successor started.
        assert stop_cause == "quorum_lost" and all(stopped for _, stopped in attempts)
    assert {outcome for outcome, _ in attempts} <= {"stale_token"}, attempts
    _judge_log(s, tmp_path, old, token)
    # After the heal the count goes on from the last committed checkpoint.
    where = wait_for("NAME to run after the heal", lambda: s.holders([NAME]).get(NAME), 10.0)
    assert int(_call(s, where, "incr")) == counted[-1] + 1
    s.verify()
