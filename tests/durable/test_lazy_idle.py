"""Activation on demand and passivation with real processes: a ``lazy`` name has no
instance until its first call; with ``idle_after`` it is passivated (its state
checkpointed) and the next call starts it again with that state. ``WhereIs`` on the
holder shows ``active`` throughout."""

from __future__ import annotations

import re
import time
from pathlib import Path

import grpc

from registry.client import SyncClient
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, wait_for


def active(c: LocalCluster, node: str, name: str) -> bool | None:
    """``Location.active`` as the holder ``node`` answers it (``None``: unset)."""
    loc = c.stub(node).WhereIs(pb.WhereIsRequest(name=name), timeout=5).location
    return loc.active if loc.HasField("active") else None


def active_if_known(c: LocalCluster, node: str, name: str) -> bool | None:
    """``active`` as ``node`` answers it, or ``None`` while the node has not yet applied
    the registration (a follower answers ``WhereIs`` from its own log)."""
    try:
        return active(c, node, name)
    except grpc.RpcError as err:
        if err.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise


def passive_total(c: LocalCluster, node: str) -> float:
    _, _, body = c.http_get(node, "/metrics")
    match = re.search(rb"^registry_passive_activations (\S+)$", body, re.M)
    assert match, "registry_passive_activations is exported"
    return float(match.group(1))


def lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


def test_lazy_starts_at_the_first_call_and_passivates_when_idle(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    name, ledger = "durable/sleeper", tmp_path / "sleeper.txt"
    seeds = [cluster.nodes[n].grpc_addr for n in cluster.ids]
    with SyncClient(seeds, timeout=10.0) as client:
        client.register(name, "sleeper", args=str(ledger).encode(), lazy=True, idle_after=1.0)
        holder = wait_for("placed", lambda: client.whereis(name, consistent=True), 10).node
        wait_for("whereis active=false", lambda: active(cluster, holder, name) is False, 10)
        time.sleep(1.0)  # the one timed wait: nothing may start without a message
        assert lines(ledger) == [], "a lazy name started before its first message"
        assert client.call(name, b"incr") == b"1"
        assert client.call(name, b"incr") == b"2"
        assert lines(ledger) == ["start new 0 0"]
        assert active(cluster, holder, name) is True
        assert passive_total(cluster, holder) == 0
        wait_for("passivation", lambda: "stop passivated" in lines(ledger) or None, 15)
        wait_for("whereis active=false", lambda: active(cluster, holder, name) is False, 10)
        assert passive_total(cluster, holder) == 1
        assert client.call(name, b"incr") == b"3", "the count came back from the checkpoint"
    start = lines(ledger)[-1].split()
    assert start[:3] == ["start", "restart", "2"] and int(start[3]) > 0, lines(ledger)


def test_a_lazy_name_never_reads_active_before_its_first_call(cluster: LocalCluster) -> None:
    """``Location.active`` of a lazy name is false from the moment its holder starts it:
    the holder used to say "true" until its worker host's first report arrived (the
    bench's tiny run once counted 199 of 200 lazy names inactive). Registered in small
    batches, each asked of every node at once, to look into that window each time."""
    leader = cluster.wait_ready()
    seen_active: set[str] = set()
    answered: set[str] = set()
    names: list[str] = []
    for batch in range(12):
        fresh = [f"durable/lazy-burst/{batch}/{i}" for i in range(25)]
        names += fresh
        specs = [pb.NameSpec(name=n, kind="sleeper", lazy=True) for n in fresh]
        cluster.stub(leader).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=30)
        deadline = time.monotonic() + 10.0
        while not answered.issuperset(fresh) and time.monotonic() < deadline:
            for name in fresh:
                for node in cluster.ids:
                    state = active_if_known(cluster, node, name)
                    if state is True:
                        seen_active.add(name)
                    elif state is False:
                        answered.add(name)
    assert answered == set(names), f"{len(names) - len(answered)} never answered by a holder"
    assert not seen_active, f"{len(seen_active)} lazy names read active before any call"
