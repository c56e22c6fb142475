"""Power loss with real nodes on LazyFS: every acknowledged registration survives (G3).

A process kill keeps the kernel's page cache, so it cannot catch a missing fsync; here
each node's data directory is a LazyFS mount and a power loss drops every byte the node
had not fsynced. Each scenario then restarts the nodes and checks (``check_survived``):
no node refuses to start, every acknowledged name is on every node, tokens keep rising.
The acknowledged/lost counts are attached to the report (``user_properties``).
"""

from __future__ import annotations

import time

import pytest

from registry.testing.lazyfs import TornWrite
from registry.testing.local_cluster import LocalCluster, wait_for
from tests.durability.conftest import ClusterFactory, RecordProperty
from tests.durability.support import RECOVERY_S, Storm, check_survived, owners, wait_whole


def test_all_nodes_lose_power_during_a_registration_storm(
    lazy_cluster: ClusterFactory, record_property: RecordProperty
) -> None:
    c = lazy_cluster(3)
    c.start()
    storm = Storm(c, "storm", writers=8, limit=4000, seconds=15).start()
    storm.wait_acked(1000)
    c.power_loss(c.ids)  # mid-storm: writers are still sending
    storm.stop()
    seen = storm.top_token
    for node_id in c.ids:
        c.restart(node_id)
    outcome = check_survived(c, storm, restarted=set(c.ids), seen=seen)
    record_property("power_loss", str(outcome))


def test_one_node_loses_power_during_a_batch_storm_and_catches_up(
    lazy_cluster: ClusterFactory, record_property: RecordProperty
) -> None:
    c = lazy_cluster(3)
    leader = c.start()
    storm = Storm(c, "batch", writers=4, batch=20, limit=600, seconds=30).start()
    storm.wait_acked(300)
    survivors = [n for n in c.ids if n != leader]
    before = owners(c, survivors[0], storm.prefix)
    c.power_loss([leader])  # the others keep running, and so does the storm
    seen = max(storm.top_token, *(token for _, token in before.values()))
    storm.wait_idle()
    storm.go(300)  # through the survivors, while the old leader is down
    restarted_at = time.monotonic()
    c.restart(leader)
    wait_whole(c)
    storm.go(300)  # the rejoined node takes writes again
    storm.stop()
    outcome = check_survived(
        c, storm, restarted={leader}, seen=seen, before=before, restarted_at=restarted_at
    )
    record_property("power_loss", str(outcome))


def test_power_loss_while_snapshots_are_taken_and_segments_roll(
    lazy_cluster: ClusterFactory, record_property: RecordProperty
) -> None:
    c = lazy_cluster(3, segment_bytes=8 << 10, snapshot_entries=32)
    c.start()
    storm = Storm(c, "roll", writers=8, limit=6000, seconds=20).start()
    # Enough writes to roll ten 8 KiB segments (group commit packs them tighter: 1,200
    # were borderline once concurrent writes share a persist).
    storm.wait_acked(1800)
    c.power_loss(c.ids)
    storm.stop()
    on_disk = {n: sorted(p.name for p in c.nodes[n].data_dir.iterdir()) for n in c.ids}
    for node_id, files in on_disk.items():
        segments = [f for f in files if f.startswith("log-")]
        assert max(segments) >= "log-0000000010", f"{node_id} rolled fewer than 10 segments"
        assert any(f.startswith("snapshot-") for f in files), f"{node_id} took no snapshot"
    seen = storm.top_token
    for node_id in c.ids:
        c.restart(node_id)
    outcome = check_survived(c, storm, restarted=set(c.ids), seen=seen)
    record_property("power_loss", str(outcome))


def test_power_loss_right_after_a_node_joins_and_the_leader_hands_over(
    lazy_cluster: ClusterFactory, record_property: RecordProperty
) -> None:
    # The real node has no runtime voter change yet (no AddMember RPC): the joining node
    # is a bootstrap voter declared from the start and started late, as `registry bench`
    # does. Joining commits its MemberUp and the ring moves names to it by handoff.
    c = lazy_cluster(4)
    joiner = c.ids[-1]
    first = c.ids[:-1]
    for node_id in first:
        c.start_node(node_id)
    wait_for("a leader among the first three", lambda: _leader(c, first), RECOVERY_S)
    storm = Storm(c, "join", writers=6, limit=6000, seconds=25).start()
    storm.wait_acked(300)
    c.start_node(joiner)
    leader = wait_whole(c)
    storm.wait_acked(len(storm.acked) + 200)
    # A graceful stop of the leader drains its names and transfers leadership.
    assert c.terminate(leader) == 0, "the leader's graceful stop should exit 0"
    rest = [n for n in c.ids if n != leader]
    wait_for("a new leader", lambda: _leader(c, rest), RECOVERY_S)
    storm.wait_acked(len(storm.acked) + 100)
    c.power_loss(rest)
    storm.stop()
    seen = storm.top_token
    for node_id in c.ids:
        c.restart(node_id)
    outcome = check_survived(c, storm, restarted=set(c.ids), seen=seen)
    record_property("power_loss", str(outcome))


@pytest.mark.parametrize("half", [1, 2], ids=["earlier-half", "later-half"])
def test_a_torn_log_write_keeps_every_acknowledged_registration(
    lazy_cluster: ClusterFactory, record_property: RecordProperty, half: int
) -> None:
    # One node: its own log is the only copy, so torn-tail recovery alone must keep
    # every acknowledged write. Its first segment's 200th write is torn — one half of it
    # reaches the disk — and LazyFS dies at once: a power cut in the middle of a write.
    # With only the later half on disk, valid records follow the damage: the write's
    # BATCH record is what tells this torn tail from corruption (storage rule 4).
    c = lazy_cluster(1)
    node = c.nodes["n1"]
    segment = node.data_dir / "log-0000000001-00000000000000000001.seg"
    c.arm_torn_write("n1", TornWrite(file=segment, occurrence=200, parts=2, persist=(half,)))
    c.start()
    storm = Storm(c, "torn", writers=4, limit=5000, seconds=20).start()
    c.disks["n1"].wait_crashed(20.0)
    storm.stop()
    seen = storm.top_token
    if node.running:
        c.kill("n1")
    c.disks["n1"].restart()
    c.restart("n1")
    outcome = check_survived(c, storm, restarted={"n1"}, seen=seen)
    log = node.log_path.read_text(encoding="utf-8")
    assert "cut a torn tail" in log, "the torn write should have left a torn tail to cut"
    record_property("power_loss", str(outcome))


def _leader(c: LocalCluster, among: list[str]) -> str | None:
    """The leader all of ``among`` know, once each of them also sees a quorum."""
    statuses = [c.status(n) for n in among]
    leaders = {s.leader for s in statuses}
    if len(leaders) != 1 or "" in leaders or not all(s.quorum for s in statuses):
        return None
    return leaders.pop()
