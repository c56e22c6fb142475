"""The peer guard lets honest traffic through: a follower that was away while the
leader compacted its log catches up by an installed snapshot (the one transfer the
snapshot guard mirrors and decodes), over peer mTLS, with nothing refused."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from registry.core.config import RaftConfig
from registry.testing.local_cluster import cluster, wait_for
from registry.v1 import registry_pb2 as pb
from tests.security.peer_client import refused

ENTRIES = RaftConfig(node_id="n1").snapshot_threshold + 150
"""More entries than the leader keeps before compacting: the follower's next entry is
gone from the leader's log, so only a snapshot can bring it back."""


def snapshot_index(data_dir: Path) -> int:
    found = [
        int(m[1])
        for p in data_dir.iterdir()
        if (m := re.fullmatch(r"snapshot-(\d+)\.snap", p.name))
    ]
    return max(found, default=0)


def test_a_follower_far_behind_catches_up_by_snapshot_with_nothing_refused(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, 3, preset="local") as c:
        leader = c.wait_ready()
        lagger = next(n for n in c.ids if n != leader)
        stub = c.stub(leader)
        stub.Register(
            pb.RegisterRequest(spec=pb.NameSpec(name="snap/room", kind="counter")), timeout=5
        )
        wait_for("the follower to apply it", lambda: c.owner("snap/room", via=lagger), 10)
        c.kill(lagger)
        left_at = snapshot_index(c.nodes[lagger].data_dir)

        def join(i: int) -> None:
            stub.Join(pb.GroupRequest(group=f"snap/g{i}", name="snap/room"), timeout=10)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(join, range(ENTRIES)))
        compacted = wait_for(
            "the leader to compact its log",
            lambda: snapshot_index(c.nodes[leader].data_dir) or None,
            10,
        )
        assert compacted > left_at
        target = c.status(leader).commit_index

        c.restart(lagger)
        wait_for(
            f"{lagger} to catch up to {target}",
            lambda: c.status(lagger).applied_index >= target,
            30,
        )
        assert snapshot_index(c.nodes[lagger].data_dir) >= compacted, "installed a snapshot"
        members = c.stub(lagger).Members(pb.MembersRequest(group=f"snap/g{ENTRIES - 1}"), timeout=5)
        assert list(members.names) == ["snap/room"]
        assert sum(refused(c, lagger).values()) == 0, refused(c, lagger)
        assert not c.crashed()
