"""Checkpoints with real processes: a counter that checkpoints continues from its last
checkpoint after ``kill -9`` of its node (FAILOVER, ``restored_from``), and a checkpoint
from an activation that was stopped is refused and never applied."""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, call_until, wait_for


def register(c: LocalCluster, name: str, kind: str, args: bytes = b"") -> None:
    spec = pb.NameSpec(name=name, kind=kind, args=args)
    c.stub(c.ids[0]).Register(pb.RegisterRequest(spec=spec), timeout=5)


def register_once_free(c: LocalCluster, name: str, kind: str) -> bool | None:
    """Register, or ``None`` while the old activation still stops (``UNREGISTERING``)."""
    try:
        register(c, name, kind)
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
            return None
        raise
    return True


def checkpoints_total(c: LocalCluster, node: str, result: str) -> float:
    _, _, body = c.http_get(node, "/metrics")
    pattern = rb'^registry_checkpoints_total\{result="%s"\} (\S+)$' % result.encode()
    match = re.search(pattern, body, re.M)
    return float(match.group(1)) if match else 0.0


def test_after_kill_9_the_count_continues_from_the_last_checkpoint(cluster: LocalCluster) -> None:
    name = "durable/counter"
    register(cluster, name, "ckpt-counter")
    first = call_until(cluster, cluster.ids[0], name, b"incr", timeout=10)
    assert first.payload == b"1:new:0"
    for expected in (b"2:new:0", b"3:new:0"):
        assert call_until(cluster, first.node, name, b"incr", timeout=5).payload == expected
    assert checkpoints_total(cluster, first.node, "committed") == 3

    cluster.kill(first.node)
    survivor = next(n for n in cluster.ids if n != first.node)
    after = call_until(cluster, survivor, name, b"get", 30, lambda r: r.node != first.node)
    count, reason, restored_from = after.payload.decode().split(":")
    assert after.token > first.token
    assert (count, reason) == ("3", "failover"), "the count continues from the checkpoint"
    assert 0 < int(restored_from) < after.token, "restored_from is the checkpoint's index"
    assert call_until(cluster, after.node, name, b"incr", 5).payload.startswith(b"4:")


def test_a_checkpoint_from_a_stopped_activation_is_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    name, outcomes = "durable/zombie", tmp_path / "zombie.log"
    register(cluster, name, "zombie", str(outcomes).encode())
    leaked = call_until(cluster, cluster.ids[0], name, b"leak", timeout=10)
    cluster.stub(cluster.ids[0]).Unregister(pb.UnregisterRequest(name=name), timeout=5)
    line = wait_for(
        "the stopped activation's late checkpoint to be answered",
        lambda: outcomes.read_text() if outcomes.exists() and outcomes.read_text() else None,
        timeout=15,
    )
    assert line.startswith(f"{int(leaked.payload)} refused StaleToken"), line
    assert checkpoints_total(cluster, leaked.node, "stale_token") == 1
    assert checkpoints_total(cluster, leaked.node, "committed") == 0
    # Registered again, the name starts with nothing: the stale state was never kept.
    wait_for(
        "the unregistered name to be free again",
        lambda: register_once_free(cluster, name, "ckpt-counter"),
        timeout=15,
    )
    again = call_until(cluster, cluster.ids[0], name, b"get", timeout=10)
    assert again.payload == b"0:new:0"
