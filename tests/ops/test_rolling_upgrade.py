"""A rolling upgrade from the previous release (issue 17): a 3-node cluster running the
commit before the versioned peer protocol (its source tree from git, on this
interpreter and dependencies) is upgraded one node at a time — SIGTERM (graceful:
names handed off), start this release on the same data directory, wait until the
cluster is whole. Mixed old/new clusters must accept each other (the old release sends
no protocol version: version 0), no name fails over (every move is a handoff), none
runs twice, and every acknowledged registration survives."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import grpc
import pytest

from registry.testing.convergence import query
from registry.testing.local_cluster import PACKAGE_ROOT, LocalCluster, rpc_error, wait_for
from registry.v1 import admin_pb2 as apb
from tests.ops.membership_support import (
    admin,
    assert_nothing_lost_nothing_twice,
    ledger_cluster,
    register,
    wait_placed_on,
)
from tests.system_tools import require_tool

PREVIOUS_RELEASE = "a3b56231908edaceff39ef289c69fd1c71caf7cb"
"""main before issue 17: peer security and storage faults, no peer protocol version."""
NAMES = [f"u-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = require_tool("git", "git")
    found = subprocess.run(
        [git, "-C", str(PACKAGE_ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        reason = f"commit {PREVIOUS_RELEASE[:12]} (the previous release) is not in this clone"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    archive = subprocess.run(
        [git, "-C", str(PACKAGE_ROOT), "archive", PREVIOUS_RELEASE, "registry"],
        capture_output=True,
        check=True,
    )
    root = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def test_rolling_upgrade_from_the_previous_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, previous_release: Path
) -> None:
    with ledger_cluster(tmp_path, monkeypatch, source=previous_release) as (c, history):
        leader = c.wait_ready()
        register(c, history, leader, NAMES)
        wait_placed_on(c, NAMES, set(c.ids))
        err = rpc_error(lambda: admin(c, "n1").MemberList(apb.MemberListRequest(), timeout=5))
        assert err.code() is grpc.StatusCode.UNIMPLEMENTED  # it really is the old release

        order = [n for n in c.ids if n != leader] + [leader]  # the leader last
        for node in order:
            assert c.terminate(node) == 0, c.log_tails()
            del c.source[node]
            c.start_node(node)
            c.wait_ready(timeout=30)
            admin(c, node).MemberList(apb.MemberListRequest(), timeout=5)  # the new release
            wait_placed_on(c, NAMES, set(c.ids))

        failovers = query(
            c.root / "ledger.sqlite",
            "SELECT name, node FROM activations WHERE reason = ?",
            ("failover",),
        )
        assert failovers == [], failovers
        assert_nothing_lost_nothing_twice(c, history, leader)


def leader_with_quorum(c: LocalCluster, nodes: list[str]) -> str:
    """The leader ``nodes`` agree on, with quorum. Not ``wait_ready``: that wants every
    member up, and the stopped node is declared down as soon as its lease ends, so
    waiting for it raced the failure detector."""

    def probe() -> str | None:
        leaders = set()
        for node in nodes:
            s = c.status(node)
            if not s.quorum or not s.leader:
                return None
            leaders.add(s.leader)
        return leaders.pop() if len(leaders) == 1 else None

    found: str = wait_for(f"one leader with quorum among {nodes}", probe, 30)
    return found


def test_entries_written_mid_upgrade_stay_readable_by_the_previous_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, previous_release: Path
) -> None:
    """Two nodes on this release lead while the third, on the previous release (which
    reads only JSON log entries), is down; it then catches up from their log. They must
    have kept writing JSON (it never said it reads binary), or it could not apply them."""
    with ledger_cluster(tmp_path, monkeypatch, source=previous_release) as (c, history):
        leader = c.wait_ready()
        old = next(n for n in c.ids if n != leader)  # stays on the previous release
        for node in [n for n in c.ids if n not in (old, leader)] + [leader]:
            assert c.terminate(node) == 0, c.log_tails()
            del c.source[node]
            c.start_node(node)
            c.wait_ready(timeout=30)
        assert c.terminate(old) == 0, c.log_tails()
        new = [n for n in c.ids if n != old]
        register(c, history, leader_with_quorum(c, new), NAMES)
        wait_placed_on(c, NAMES, set(new))
        c.start_node(old)  # the previous release, catching up from the new nodes' log
        c.wait_ready(timeout=30)
        wait_placed_on(c, NAMES, set(c.ids))  # every node, the old one too, agrees
        assert_nothing_lost_nothing_twice(c, history, c.wait_ready())
