"""Power loss with real nodes on LazyFS: every acknowledged registration survives (G3).

A process kill keeps the kernel's page cache, so it cannot catch a missing fsync; here
each node's data directory is a LazyFS mount and a power loss drops every byte the node
had not fsynced. Each scenario then restarts the nodes and checks (``check_survived``):
no node refuses to start, every acknowledged name is on every node, tokens keep rising.
The acknowledged/lost counts are attached to the report (``user_properties``).
"""

from __future__ import annotations

from tests.durability.conftest import ClusterFactory, RecordProperty
from tests.durability.support import Storm, check_survived


def test_all_nodes_lose_power_during_a_registration_storm(
    lazy_cluster: ClusterFactory, record_property: RecordProperty
) -> None:
    c = lazy_cluster(3)
    c.start()
    storm = Storm(c, via=c.ids, prefix="storm", writers=8, limit=4000, seconds=15).start()
    storm.wait_acked(400)
    c.power_loss(c.ids)  # mid-storm: writers are still sending
    storm.stop()
    seen = storm.top_token
    for node_id in c.ids:
        c.restart(node_id)
    outcome = check_survived(c, storm, restarted=set(c.ids), seen=seen)
    record_property("power_loss", outcome)
