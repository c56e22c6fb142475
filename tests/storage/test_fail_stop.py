"""Fail-stop (G9): a node whose core loop or storage fails exits non-zero with one line.

Faults are real ones raised inside the real classes (``registry.node.faults``: a trigger
file arms them), in real node processes of a 3-node cluster; the victim is a follower, so
the test can also show that the rest of the cluster keeps taking writes, and that the
victim, restarted without the fault, comes back with every acknowledged name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.node.faults import CORE_ENV, FSYNC_ENV
from tests.cluster.harness import LocalCluster, wait_for
from tests.storage.conftest import names_on, register

EXIT_CORE_FAILED = 70
EXIT_STORAGE_IO = 74
STALL_S = 1.0
"""``healthz_stall_s`` of these clusters."""


class Armed:
    """A started cluster whose nodes each read a fault from their own trigger file."""

    def __init__(self, root: Path, env: str, spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cluster = LocalCluster(root, 3, config={"healthz_stall_s": STALL_S})
        self.triggers = {n: root / f"{n}.trigger" for n in self.cluster.ids}
        for node, trigger in self.triggers.items():
            monkeypatch.setenv(env, f"{trigger}{spec}")  # read when the process starts
            self.cluster.start_node(node)
        monkeypatch.delenv(env)
        self.leader = self.cluster.wait_ready(timeout=30)
        self.victim = next(n for n in self.cluster.ids if n != self.leader)

    def arm(self) -> float:
        self.triggers[self.victim].touch()
        return time.monotonic()

    def wait_exit(self, timeout: float) -> tuple[int, float, str]:
        """The victim's exit code, when it was seen to exit, and its log."""
        code = self.cluster.wait_exit(self.victim, timeout)
        return code, time.monotonic(), self.cluster.nodes[self.victim].log_path.read_text()

    def healthz(self) -> int:
        return self.cluster.http_get(self.victim, "/healthz", timeout=2)[0]


@pytest.fixture
def armed_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Armed]:
    a = Armed(tmp_path, FSYNC_ENV, ":3", monkeypatch)  # the failing fsync hangs 3 s first
    try:
        yield a
    finally:
        a.cluster.close()


@pytest.fixture
def armed_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Armed]:
    a = Armed(tmp_path, CORE_ENV, "", monkeypatch)
    try:
        yield a
    finally:
        a.cluster.close()


def one_critical_line(log: str, code: int) -> str:
    """The one line the node logged on its way out; no traceback anywhere."""
    assert "Traceback" not in log, log
    lines = [line for line in log.splitlines() if f"exiting with code {code}:" in line]
    assert len(lines) == 1, log
    return lines[0]


def test_core_loop_failure_exits_within_a_second(armed_core: Armed) -> None:
    c, victim = armed_core.cluster, armed_core.victim
    register(c, armed_core.leader, [f"fs/core/{i}" for i in range(10)])
    assert armed_core.healthz() == 200

    armed = armed_core.arm()
    code, seen, log = armed_core.wait_exit(timeout=10)

    assert code == EXIT_CORE_FAILED
    print(f"exited {seen - armed:.3f} s after the fault was armed")
    assert seen - armed < 1.0, f"exited {seen - armed:.2f} s after the fault"
    line = one_critical_line(log, EXIT_CORE_FAILED)
    assert re.search(r"the core loop failed: InjectedFault: injected core-loop failure", line)
    # The others go on; the victim comes back (fault disarmed) with every name.
    register(c, armed_core.leader, [f"fs/core/after/{i}" for i in range(5)])
    armed_core.triggers[victim].unlink()
    c.restart(victim)
    expected = sorted(
        [f"fs/core/{i}" for i in range(10)] + [f"fs/core/after/{i}" for i in range(5)]
    )
    wait_for("the victim to have every name", lambda: names_on(c, victim) == expected, 20)


def test_failed_fsync_stalls_healthz_then_exits_74(armed_fsync: Armed) -> None:
    c, victim = armed_fsync.cluster, armed_fsync.victim
    acked = [f"fs/io/{i}" for i in range(10)]
    register(c, armed_fsync.leader, acked)
    assert armed_fsync.healthz() == 200

    armed = armed_fsync.arm()
    # A write makes every voter persist: the victim's fsync hangs 3 s, then fails. The
    # leader commits it with the other follower.
    register(c, armed_fsync.leader, ["fs/io/trigger"])
    acked.append("fs/io/trigger")
    proc = c.nodes[victim].proc
    assert proc is not None
    wait_for(
        "/healthz to answer 503 while the core loop waits on the hung fsync",
        lambda: proc.poll() is None and armed_fsync.healthz() == 503,
        timeout=3 + STALL_S,
    )
    unhealthy = time.monotonic()
    assert proc.poll() is None, "/healthz went 503 before the process exited"
    code, seen, log = armed_fsync.wait_exit(timeout=10)
    print(f"/healthz 503 {unhealthy - armed:.2f} s, exit {seen - armed:.2f} s after arming")

    assert code == EXIT_STORAGE_IO
    line = one_critical_line(log, EXIT_STORAGE_IO)
    assert re.search(
        rf"storage IO error on {re.escape(str(c.nodes[victim].data_dir))}/log-\d+-\d+\.seg"
        r"(\.tmp)?: \[Errno 5\] Input/output error; .*a failed write or fsync is never retried",
        line,
    ), line
    armed_fsync.triggers[victim].unlink()
    c.restart(victim)
    wait_for("the victim to have every name", lambda: names_on(c, victim) == sorted(acked), 20)
