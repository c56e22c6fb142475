"""G3 with real processes: ``kill -9`` of every node right after acknowledged
``register_many`` calls, then a restart of all of them: every acknowledged name is there,
on every node. A node that answered before its log reached the disk (or a leader that
acknowledged before a quorum had fsync'd) loses the last batches here."""

from __future__ import annotations

import threading
from functools import partial

import grpc

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, wait_for

BATCH = 25
MIN_BATCHES = 4
"""Batches acknowledged before the kill: the writer keeps going while the kill lands."""


def test_kill_9_of_every_node_right_after_acknowledged_batches(cluster: LocalCluster) -> None:
    leader = cluster.wait_ready()
    acked: list[str] = []
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        for k in range(1000):  # bounded; ends at the kill
            if stop.is_set():
                return
            names = [f"kill9/{k:03d}/{i:02d}" for i in range(BATCH)]
            specs = [pb.NameSpec(name=n, kind="counter") for n in names]
            try:
                cluster.stub(leader).RegisterMany(
                    pb.RegisterManyRequest(specs=specs), timeout=RPC_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                return  # the kill landed: outcome unknown, not acknowledged
            acked.extend(names)

    thread = threading.Thread(target=writer, name="kill9-writer", daemon=True)
    thread.start()
    try:
        wait_for(
            f"{MIN_BATCHES} batches acknowledged", lambda: len(acked) >= MIN_BATCHES * BATCH, 30
        )
        # Kill every node at once, while the writer still writes: the newest batches
        # were acknowledged moments before.
        for node_id in cluster.ids:
            cluster.kill(node_id)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    survivors = list(acked)
    for node_id in cluster.ids:
        cluster.restart(node_id)
    leader = cluster.wait_ready(timeout=30)
    commit = int(
        cluster.stub(leader).Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S).commit_index
    )

    def listed(via: str) -> set[str]:
        reply = cluster.stub(via).List(pb.ListRequest(prefix="kill9/"), timeout=RPC_TIMEOUT_S)
        assert not reply.truncated
        return {loc.name for loc in reply.locations}

    def applied(node_id: str) -> bool:
        status = cluster.stub(node_id).Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S)
        return int(status.applied_index) >= commit

    for node_id in cluster.ids:
        wait_for(f"{node_id} to apply the commit index", partial(applied, node_id), 10)
        missing = sorted(set(survivors) - listed(node_id))
        assert not missing, (
            f"{node_id} lost {len(missing)} of {len(survivors)} acknowledged names, e.g. "
            f"{missing[:3]} (writer: {errors[:1]})"
        )
