"""Helpers for the runtime-membership tests: a ledger-backed LocalCluster, the admin
stub, promotion with retries, and the checks every membership test ends with."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from registry.node.admin import NOT_CAUGHT_UP
from registry.node.status import REASON_KEY
from registry.testing import ledger as ledger_mod
from registry.testing.history import History
from registry.testing.jepsen_check import check
from registry.testing.local_cluster import LocalCluster, wait_for
from registry.v1 import admin_pb2 as apb
from registry.v1 import admin_pb2_grpc
from registry.v1 import registry_pb2 as pb

WORKER_MODULES = ("registry.examples", "registry.testing.ledger_worker")


@contextmanager
def ledger_cluster(
    root: Path, monkeypatch: pytest.MonkeyPatch, source: Path | None = None
) -> Iterator[tuple[LocalCluster, History]]:
    """A started 3-node cluster whose ``ledger`` workers record every activation, and the
    history (acknowledged names, kills, final placement) the checker reads beside it.
    ``source``: every node runs that source tree (an earlier release) instead of this."""
    ledger = root / "ledger.sqlite"
    ledger_mod.create(ledger)
    monkeypatch.setenv(ledger_mod.ENV, str(ledger))
    history = History(ledger)
    try:
        with LocalCluster(root, 3, preset="local", worker_modules=WORKER_MODULES) as c:
            if source is not None:
                c.source = dict.fromkeys(c.ids, source)
            c.start(timeout=30.0)
            yield c, history
    finally:
        history.close()


def admin(c: LocalCluster, node: str) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(c.channel(node))


def reason(exc: grpc.RpcError) -> str:
    trailers: Any = exc.trailing_metadata()
    return next((str(v) for k, v in trailers or () if k == REASON_KEY), "")


def register(c: LocalCluster, history: History, via: str, names: list[str]) -> None:
    specs = [pb.NameSpec(name=n, kind="ledger") for n in names]
    sent = time.monotonic()
    c.stub(via).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=10)
    history.acked(names, sent, time.monotonic())


def kill(c: LocalCluster, history: History, node: str) -> None:
    proc = c.nodes[node].proc
    assert proc is not None
    c.kill(node)
    history.kill(proc.pid, time.monotonic())


def add_and_promote(c: LocalCluster, node: str, via: str) -> float:
    """Start ``node`` fresh, add it as a learner through ``via``, promote it as soon as it
    has caught up; returns seconds from MemberAdd to the promotion's commit."""
    proc = c.add_node(node)
    c.start_node(node)
    started = time.monotonic()
    request = apb.MemberAddRequest(id=node, address=proc.grpc_addr, peer_address=c.peer_addr[node])
    admin(c, via).MemberAdd(request, timeout=10)

    def promoted() -> bool:
        try:
            admin(c, via).MemberPromote(apb.MemberPromoteRequest(id=node), timeout=10)
        except grpc.RpcError as exc:
            if reason(exc) == NOT_CAUGHT_UP:
                return False
            raise
        return True

    wait_for(f"{node} promoted", promoted, 30, interval=0.1)
    return time.monotonic() - started


def roles(c: LocalCluster, via: str) -> dict[str, str]:
    reply = admin(c, via).MemberList(apb.MemberListRequest(), timeout=5)
    return {m.id: m.role for m in reply.members}


def voters(c: LocalCluster, via: str) -> set[str]:
    return {n for n, role in roles(c, via).items() if role == "voter"}


def placements(c: LocalCluster, via: str) -> dict[str, tuple[str, int]]:
    reply = c.stub(via).List(pb.ListRequest(limit=100_000), timeout=10)
    return {loc.name: (loc.node, loc.token) for loc in reply.locations}


def wait_placed_on(c: LocalCluster, names: list[str], nodes: set[str]) -> None:
    """Every name placed on one of ``nodes``, and every one of them agrees on where."""

    def probe() -> bool:
        seen = [placements(c, n) for n in sorted(nodes)]
        if any(set(s) != set(names) for s in seen):
            return False
        return all(s == seen[0] for s in seen) and all(h in nodes for h, _ in seen[0].values())

    wait_for(f"{len(names)} names placed on {sorted(nodes)}", probe, 30)


def refused(c: LocalCluster, node: str, why: str) -> float:
    """How many peer messages ``node`` refused for reason ``why`` (its /metrics)."""
    _, _, body = c.http_get(node, "/metrics")
    pattern = rf'registry_peer_messages_refused_total\{{reason="{why}"\}} (\S+)'
    found = re.search(pattern, body.decode())
    return float(found.group(1)) if found else 0.0


def assert_nothing_lost_nothing_twice(c: LocalCluster, history: History, via: str) -> None:
    """G3 (every acknowledged name is still registered), G1 (no two activations of a
    name overlapped, by the ledger) and G2 (tokens only grew)."""
    history.final(placements(c, via))
    report = check(c.root / "ledger.sqlite")
    assert report.lost_registrations == 0, report.examples
    assert report.duplicates == 0, report.examples
    assert report.token_regressions == 0, report.examples
    assert report.activations >= report.names > 0, report
