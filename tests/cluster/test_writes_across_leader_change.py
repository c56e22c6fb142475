"""Concurrent writes across leader changes (real processes): each write in a batch is
answered for itself, and none is lost or applied twice.

Group commit gathers the writes that arrive together into one Ready (one entry each, one
persist, one append per follower), and the peer transport sends what is queued for a
peer in one batch. Here 32 writers register fresh names one by one through every node
while the leader is paused (``SIGSTOP``) past an election timeout and resumed, twice. The
paused leader resumes with proposals in its log, and with writes queued in its sockets,
that the new leader's entries overwrite: those must fail (``UNAVAILABLE``), never succeed.

Checks, once the cluster is whole again:
- none lost: every acknowledged name is listed on every node;
- none twice: no write was answered ``ALREADY_EXISTS`` (every name is fresh, so that
  would be a write applied twice, or an answer meant for another write);
- each answered for itself: every acknowledged write returned an index of its own, and
  its name's token (the index of the entry that activated it: the registration, or a
  later restart — a paused leader acks no member heartbeats, so members fence and
  restart their names) is at least that index.
"""

from __future__ import annotations

import functools
import os
import signal

import grpc

from registry.testing.local_cluster import LocalCluster, Timeout, wait_for
from tests.durability.support import Storm, owners

WRITERS = 32
PAUSES = 2
PAUSE_TIMEOUT_S = 10.0
"""Bound on the others electing a new leader while the old one is stopped."""
SETTLE_S = 30.0
"""Bound on every node listing every acknowledged name with its final token."""


def _other_leader(c: LocalCluster, old: str) -> str | None:
    for node_id in c.ids:
        if node_id == old:
            continue
        try:
            leader = c.status(node_id).leader
        except grpc.RpcError:
            continue
        if leader not in ("", old):
            return leader
    return None


def _problems(c: LocalCluster, storm: Storm) -> list[str]:
    acked = storm.acked
    problems = []
    for node_id in c.ids:
        listed = owners(c, node_id, storm.prefix)
        lost = sorted(acked.keys() - listed.keys())
        if lost:
            problems.append(f"{len(lost)} acknowledged names not listed on {node_id}: {lost[:5]}")
        for name, index in acked.items():
            owner, token = listed.get(name, ("", index))
            if token < index:
                problems.append(f"{name} on {owner}: token {token}, below the {index} returned")
    return problems


def test_each_concurrent_write_is_answered_for_itself_across_leader_changes(
    cluster: LocalCluster,
) -> None:
    c = cluster
    storm = Storm(c, "across", writers=WRITERS, limit=1_000_000, seconds=120).start()
    try:
        for _ in range(PAUSES):
            storm.wait_acked(len(storm.acked) + 300)
            old = c.wait_ready()
            proc = c.nodes[old].proc
            assert proc is not None
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                wait_for("a new leader", functools.partial(_other_leader, c, old), PAUSE_TIMEOUT_S)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
        storm.wait_acked(len(storm.acked) + 300)
    finally:
        storm.stop()
    c.wait_ready()
    acked = storm.acked
    twice = {why: n for why, n in storm.errors.items() if "ALREADY_EXISTS" in why}
    assert not twice, f"fresh names answered ALREADY_EXISTS: {twice}"
    indexes = list(acked.values())
    shared = len(indexes) - len(set(indexes))
    assert not shared, f"{shared} acknowledged writes returned an index another one returned"
    try:
        wait_for(
            "every acknowledged name listed as answered",
            lambda: not _problems(c, storm),
            SETTLE_S,
        )
    except Timeout:
        problems = _problems(c, storm)
        raise AssertionError(f"{len(problems)} problems, e.g. {problems[:8]}") from None
    assert storm.failed > 0, "no write failed: the pauses overwrote nothing (test too weak)"
