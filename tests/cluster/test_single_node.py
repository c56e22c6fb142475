"""A one-node cluster (``registry dev --nodes 1``) keeps its member lease.

Regression: a lone node acknowledges its own heartbeats without producing a Ready, and
the driver used to move its lease deadline only while processing a Ready, so the node
went "not ready: no quorum" one lease after it started and stayed so."""

from __future__ import annotations

import time
from pathlib import Path

from registry.core.timing import preset
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, call_until


def test_a_single_node_keeps_its_lease_and_serves(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, 1, preset="local") as c:
        c.start(timeout=30.0)
        lease = preset("local").lease
        # The feature is "stays ready": watch /readyz over several lease periods.
        until = time.monotonic() + 4 * lease + 1.0
        answers: list[tuple[int, bytes]] = []
        while time.monotonic() < until:
            status, _, body = c.http_get("n1", "/readyz")
            answers.append((status, body))
            time.sleep(0.05)  # polling interval, not a stand-in for a condition
        lapses = [body for status, body in answers if status != 200]
        assert not lapses, f"{len(lapses)} of {len(answers)} probes not ready: {lapses[:3]}"
        spec = pb.NameSpec(name="solo", kind="echo")
        c.stub("n1").Register(pb.RegisterRequest(spec=spec), timeout=5)
        reply = call_until(c, "n1", "solo", b"hi", timeout=10.0)
        assert (reply.payload, reply.node) == (b"hi", "n1")
