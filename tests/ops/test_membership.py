"""Runtime membership changes on real node processes (issue 17).

- A 4th node joins as a learner, is promoted once caught up, and an old voter (the
  leader) is removed: 3 voters again, its names moved by handoff, nothing ran twice.
- The replace-a-dead-voter runbook (docs/operations.md): removing a live voter while
  another is dead is refused (it would leave no reachable majority); the dead one is
  removed, a fresh node with an empty data dir added and promoted; every acknowledged
  name is still registered, placed once, and no name ever ran twice (ledger).
- A removed node that comes back is refused by the peer guard and cannot be re-added.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from registry.cli import main
from registry.node.admin import QUORUM_AT_RISK, RETIRED
from registry.testing.local_cluster import rpc_error, wait_for
from registry.v1 import admin_pb2 as apb
from registry.v1 import registry_pb2 as pb
from tests.ops.membership_support import (
    add_and_promote,
    admin,
    assert_nothing_lost_nothing_twice,
    kill,
    ledger_cluster,
    placements,
    reason,
    refused,
    register,
    roles,
    voters,
    wait_placed_on,
)

NAMES = [f"m-{i}" for i in range(24)]


def test_add_a_fourth_node_promote_it_and_remove_an_old_voter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ledger_cluster(tmp_path, monkeypatch) as (c, history):
        leader = c.wait_ready()
        follower = next(n for n in c.ids if n != leader)
        register(c, history, follower, NAMES)
        wait_placed_on(c, NAMES, {"n1", "n2", "n3"})

        promote_s = add_and_promote(c, "n4", via=follower)
        print(f"\nn4: MemberAdd to promoted voter in {promote_s:.2f} s")
        wait_for("4 voters", lambda: voters(c, "n4") == {"n1", "n2", "n3", "n4"}, 10)
        wait_for(
            "n4 to host names", lambda: any(h == "n4" for h, _ in placements(c, "n4").values()), 30
        )

        before = placements(c, "n4")
        held = sum(1 for h, _ in before.values() if h == leader)
        reply = admin(c, follower).MemberRemove(apb.MemberRemoveRequest(id=leader), timeout=30)
        assert reply.names_moved == held and reply.handed_off, reply
        left = {"n1", "n2", "n3", "n4"} - {leader}
        for n in left:  # every replica applies the removal (read from its own state)
            wait_for(f"{n} to apply the removal", lambda n=n: voters(c, n) == left, 10)  # type: ignore[misc]
        assert roles(c, "n4")[leader] == "retired"
        wait_placed_on(c, NAMES, left)
        after = placements(c, "n4")
        for name, (holder, token) in before.items():
            if holder == leader:  # moved: a new activation with a greater token
                assert after[name][1] > token, (name, before[name], after[name])

        # The removed node still runs: whatever it sends is refused, and it changes no term.
        term = c.status("n4").term
        wait_for(
            f"{leader}'s traffic refused as retired",
            lambda: sum(refused(c, n, "retired_member") for n in left) > 0,
            15,
        )
        c.terminate(leader)
        c.start_node(leader)  # it comes back with its old data dir: still refused
        counted = sum(refused(c, n, "retired_member") for n in left)
        wait_for(
            f"{leader} refused after its restart",
            lambda: sum(refused(c, n, "retired_member") for n in left) > counted,
            15,
        )
        assert c.status("n4").term == term
        assert voters(c, "n4") == left
        c.terminate(leader)
        assert_nothing_lost_nothing_twice(c, history, "n4")


def test_replace_a_dead_voter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ledger_cluster(tmp_path, monkeypatch) as (c, history):
        leader = c.wait_ready()
        dead, alive = (n for n in c.ids if n != leader)
        register(c, history, leader, NAMES)
        wait_placed_on(c, NAMES, {"n1", "n2", "n3"})
        kill(c, history, dead)

        # Removing a live voter now would leave {leader, dead}: one reachable of two.
        wait_for(f"{dead} down", lambda: not _up(c.status(leader), dead), 15)
        err = rpc_error(
            lambda: admin(c, leader).MemberRemove(apb.MemberRemoveRequest(id=alive), timeout=10)
        )
        assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, QUORUM_AT_RISK)
        assert "force" in (err.details() or ""), err.details()
        assert voters(c, leader) == {"n1", "n2", "n3"}

        # The runbook's commands, as an operator types them.
        addr = ["--addr", c.nodes[alive].grpc_addr]
        assert main(["member", "remove", dead, *addr]) == 0
        assert f"{dead} removed" in capsys.readouterr().out
        assert main(["member", "list", "--json", *addr]) == 0
        listed = {m["id"]: m["role"] for m in json.loads(capsys.readouterr().out)["members"]}
        assert listed == {leader: "voter", alive: "voter", dead: "retired"}, listed
        wait_placed_on(c, NAMES, {leader, alive})

        promote_s = add_and_promote(c, "n4", via=alive)
        print(f"\nreplacement n4: MemberAdd to promoted voter in {promote_s:.2f} s")
        wait_for("3 voters again", lambda: voters(c, "n4") == {leader, alive, "n4"}, 10)
        wait_placed_on(c, NAMES, {leader, alive, "n4"})

        err = rpc_error(
            lambda: admin(c, leader).MemberAdd(
                apb.MemberAddRequest(id=dead, address="127.0.0.1:1"), timeout=5
            )
        )
        assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, RETIRED)

        # Bad input: a precise status each, and the membership does not change (G7).
        members = roles(c, leader)
        stub = admin(c, alive)
        bad = {
            "empty id": (
                lambda: stub.MemberAdd(apb.MemberAddRequest(id="", address="h:1"), timeout=5),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            "address without a port": (
                lambda: stub.MemberAdd(apb.MemberAddRequest(id="n9", address="h"), timeout=5),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            "add a voter again": (
                lambda: stub.MemberAdd(apb.MemberAddRequest(id="n4", address="h:1"), timeout=5),
                grpc.StatusCode.ALREADY_EXISTS,
            ),
            "promote a voter": (
                lambda: stub.MemberPromote(apb.MemberPromoteRequest(id="n4"), timeout=5),
                grpc.StatusCode.ALREADY_EXISTS,
            ),
            "promote a stranger": (
                lambda: stub.MemberPromote(apb.MemberPromoteRequest(id="zz"), timeout=5),
                grpc.StatusCode.NOT_FOUND,
            ),
            "remove a stranger": (
                lambda: stub.MemberRemove(apb.MemberRemoveRequest(id="zz"), timeout=5),
                grpc.StatusCode.NOT_FOUND,
            ),
        }
        got = {what: rpc_error(call).code() for what, (call, _) in bad.items()}
        assert got == {what: code for what, (_, code) in bad.items()}
        assert roles(c, leader) == members
        assert_nothing_lost_nothing_twice(c, history, "n4")


def _up(status: pb.ClusterStatus, node: str) -> bool:
    return any(m.id == node and m.up for m in status.members)
