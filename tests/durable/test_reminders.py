"""A durable reminder with real processes: it fires on the owner, keeps firing on the new
owner after ``kill -9`` of the old one, at least once per period, with duplicates
counted and bounded."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, call_until, wait_for
from tests.hosts.support import host_pids

PERIOD_S = 0.5
MAX_DUPLICATES = 3
"""Periods fired twice in one failover: those fired but not yet acknowledged when the
owner died (about one per second of acknowledgement latency; generous under load)."""


def firings(ledger: Path) -> list[tuple[str, float]]:
    """``(node, fired_at)`` per line of the worker's ledger."""
    if not ledger.exists():
        return []
    return [(line.split()[0], float(line.split()[3])) for line in ledger.read_text().splitlines()]


def test_a_reminder_keeps_firing_on_the_new_owner_after_kill_9(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    name, ledger = "durable/reminder", tmp_path / "ledger.txt"
    spec = pb.NameSpec(name=name, kind="reminder-ledger", args=str(ledger).encode())
    cluster.stub(cluster.ids[0]).Register(pb.RegisterRequest(spec=spec), timeout=5)
    owner = call_until(cluster, cluster.ids[0], name, b"list", timeout=10)
    assert owner.payload == b"tick", "the reminder is set (and listed) on start"
    wait_for("two firings on the owner", lambda: len(firings(ledger)) >= 2 or None, 15)

    cluster.kill(owner.node)
    wait_for(
        "two firings on another node",
        lambda: sum(node != owner.node for node, _ in firings(ledger)) >= 2 or None,
        30,
    )
    fired = firings(ledger)
    due_times = sorted({at for _, at in fired})
    periods = [round((at - due_times[0]) / PERIOD_S) for at in due_times]
    assert periods == list(range(len(periods))), f"a period never fired: {periods}"
    duplicates = len(fired) - len(due_times)
    assert duplicates <= MAX_DUPLICATES, f"{duplicates} periods fired twice: {fired}"
    new_owner = next(node for node, _ in reversed(fired) if node != owner.node)
    _, _, body = cluster.http_get(new_owner, "/metrics")
    match = re.search(rb"^registry_reminders_fired_total (\S+)$", body, re.M)
    assert match and float(match.group(1)) >= 1, "the new owner's firings are counted"
    print(f"reminder: {len(due_times)} periods, {duplicates} fired twice")


def test_a_reminder_keeps_firing_after_its_worker_host_is_killed(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The host is restarted with the activation (same token, reason RESTART): it must
    resume the reminder its instance set after it started, from its last acknowledged
    period — not lose it, nor replay the periods acknowledged since."""
    name, ledger = "durable/host-crash", tmp_path / "ledger.txt"
    spec = pb.NameSpec(name=name, kind="reminder-ledger", args=str(ledger).encode())
    cluster.stub(cluster.ids[0]).Register(pb.RegisterRequest(spec=spec), timeout=5)
    owner = call_until(cluster, cluster.ids[0], name, b"list", timeout=10)
    wait_for("three firings", lambda: len(firings(ledger)) >= 3 or None, 15)
    (host_pid,) = host_pids(cluster, owner.node)
    os.kill(host_pid, signal.SIGKILL)
    wait_for("a new worker host", lambda: host_pids(cluster, owner.node) != [host_pid], 10)
    killed_at = len(firings(ledger))
    wait_for(
        "three firings from the restarted host",
        lambda: len(firings(ledger)) >= killed_at + 3 or None,
        15,
    )
    fired = firings(ledger)
    assert {node for node, _ in fired} == {owner.node}, "it never moved"
    due_times = sorted({at for _, at in fired})
    periods = [round((at - due_times[0]) / PERIOD_S) for at in due_times]
    assert periods == list(range(len(periods))), f"a period never fired: {periods}"
    duplicates = len(fired) - len(due_times)
    assert duplicates <= MAX_DUPLICATES, f"{duplicates} periods fired twice: {fired}"
    print(f"host restart: {len(due_times)} periods, {duplicates} fired twice")
