"""Log entries: a cluster whose nodes all read binary entries writes them in binary
(``registry.core.command_binary``), and each node's log on disk says so; entries written
before every peer had said so are JSON, and both kinds load after a restart."""

from __future__ import annotations

from registry.core.commands import Register, decode
from registry.core.messages import EntryType
from registry.node.storage import FileStorage
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, wait_for


def test_a_cluster_of_this_release_writes_binary_entries(cluster: LocalCluster) -> None:
    leader = cluster.wait_ready()
    follower = next(n for n in cluster.ids if n != leader)
    # Every stream has carried its codecs once the leader has heard from both peers.
    for via, name in ((leader, "enc/at-leader"), (follower, "enc/forwarded")):
        cluster.stub(via).Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")), timeout=5
        )
    cluster.stub(leader).RegisterMany(
        pb.RegisterManyRequest(
            specs=[pb.NameSpec(name=f"enc/many/{i}", kind="echo") for i in range(50)]
        ),
        timeout=5,
    )
    wait_for(
        "every node to list 52 names",
        lambda: all(cluster.status(n).names == 52 for n in cluster.ids),
        10.0,
    )
    exits = cluster.terminate_all()
    assert all(code == 0 for code in exits.values()), exits
    for node in cluster.ids:
        with FileStorage(cluster.nodes[node].data_dir, fsync=False) as st:
            entries = st.load(repair=False).persisted.entries
        registers = {}
        for entry in entries:
            if entry.type is EntryType.NORMAL and entry.data:
                command = decode(entry.data)
                if isinstance(command, Register):
                    registers[command.specs[0].name] = entry.data
        assert set(registers) == {"enc/at-leader", "enc/forwarded", "enc/many/0"}, node
        assert all(data[:1] == b"\x01" for data in registers.values()), (node, registers)
    cluster.start()
    assert all(cluster.status(n).names == 52 for n in [cluster.wait_ready()])
