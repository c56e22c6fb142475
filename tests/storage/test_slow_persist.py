"""A node whose every persist stalls (a slow disk, a starved thread pool) keeps its member
lease: the acknowledgements of its heartbeats renew it as they arrive, not after the
persist in progress (``ReadyLoop`` rule 11). Queued behind 0.6 s persists, each one came
too late on the ``lan`` preset's 1 s lease, and the node fenced every worker it ran.

Real node processes; the stall is ``REGISTRY_FAULT_SLOW_PERSIST`` on one follower while
a writer keeps every Ready carrying entries. What G1 and the user see is asserted: the
follower answers every call to its names meanwhile, and afterwards its incarnation, its
names' tokens and its worker host (never killed and restarted) are unchanged. Before
rule 11, 17 of 24 such calls were refused (no lease; the host restarting after the
fence's kill).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, call_until
from tests.cluster.slow_disk import SlowDiskCluster, names_owned_by

SLOW_PERSIST_S = 0.6
"""Over half the 1 s lease: two queued persists outlast it; under the lease itself."""
STALLED_S = 6.0
"""How long the follower's persists stay slow: several leases."""
HELD = 8


def _tokens(c: LocalCluster, via: str, names: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for name in names:
        where = c.stub(via).WhereIs(pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S)
        out[name] = (where.location.node, where.location.token)
    return out


def _host_restarts(c: LocalCluster, node: str) -> float:
    status, _, body = c.http_get(node, "/metrics")
    assert status == 200
    families = text_string_to_metric_families(body.decode())
    family = next(f for f in families if f.name == "registry_host_restarts")
    return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))


def _incarnation(c: LocalCluster, via: str, node: str) -> int:
    members = c.status(via).members
    return next(m.incarnation for m in members if m.id == node)


def test_a_node_with_stalled_persists_keeps_its_lease_and_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowDiskCluster(tmp_path, monkeypatch, preset="lan", delay_s=SLOW_PERSIST_S)
    c = slow.cluster
    try:
        leader = c.wait_ready()
        victim = next(n for n in c.ids if n != leader)
        held = list(itertools.islice(names_owned_by(victim, c.ids, "slow/held/"), HELD))
        specs = [pb.NameSpec(name=n, kind="echo") for n in held]
        c.stub(leader).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=RPC_TIMEOUT_S)
        for name in held:
            assert call_until(c, leader, name, b"up", timeout=10).node == victim
        before = _tokens(c, leader, held)
        incarnation = _incarnation(c, leader, victim)

        slow.stall(victim)
        try:
            written = 0
            refused: list[str] = []
            until = time.monotonic() + STALLED_S
            while time.monotonic() < until and written < 200:  # bounded in time and count
                spec = pb.NameSpec(name=f"slow/write/{written}", kind="echo")
                c.stub(leader).Register(pb.RegisterRequest(spec=spec), timeout=RPC_TIMEOUT_S)
                written += 1
                name = held[written % len(held)]
                try:
                    c.stub(victim).Call(pb.CallRequest(name=name, payload=b"x"), timeout=5.0)
                except grpc.RpcError as exc:
                    refused.append(f"{name}: {exc.code().name} {exc.details()}")
                time.sleep(0.05)  # pacing the writer, not waiting for a condition
        finally:
            slow.unstall(victim)

        assert written >= 10, f"only {written} writes in {STALLED_S} s"
        assert not refused, f"{len(refused)} of {written} calls refused: {refused[:3]}"
        log = c.nodes[victim].log_path.read_text()
        lapses = [line for line in log.splitlines() if "member lease lapsed" in line]
        assert not lapses, "the stalled node's lease lapsed:\n" + "\n".join(lapses)
        assert _incarnation(c, leader, victim) == incarnation, "the stalled node fenced"
        assert _host_restarts(c, victim) == 0, "the stalled node killed its worker host"
        assert _tokens(c, leader, held) == before, "the stalled node's names moved or restarted"
    finally:
        c.close()
