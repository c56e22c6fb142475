"""A full disk (G9, issue 15): the storage alarm refuses writes until space is freed; a
write that fails anyway stops the node; nothing acknowledged is lost either way.

Each node's data directory is its own 8 MiB tmpfs (root needed: skipped with the reason
otherwise, failed under ``CI=true``); a filler file takes the space away.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from registry.client import StorageFull, translate
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, rpc_error, wait_for
from tests.storage.conftest import names_on, register, tmpfs

MIB = 1 << 20
RESERVE = 4 * MIB
EXIT_STORAGE_IO = 74


@pytest.fixture
def cluster_on_tmpfs(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, 3, config={"storage_reserve_bytes": RESERVE})
    with tmpfs([n.data_dir for n in c.nodes.values()]):
        try:
            c.start(timeout=30)
            yield c
        finally:
            c.close()  # before the unmount


def free_bytes(d: Path) -> int:
    st = os.statvfs(d)
    return st.f_bavail * st.f_frsize


def fill(d: Path, leave: int) -> Path:
    """Write a filler file until ``leave`` bytes are free (at most; 0: none at all)."""
    filler = d / "filler.bin"
    chunk = b"\xa5" * MIB
    with filler.open("wb") as f:
        for _ in range(64):  # bounded: the tmpfs holds 8 MiB
            room = free_bytes(d) - leave
            if room <= 0:
                break
            try:
                f.write(chunk[: min(room, MIB)])
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def alarms(c: LocalCluster, node: str) -> list[dict[str, object]]:
    value = c.http_json(node)["alarms"]
    assert isinstance(value, list)
    return value


def alarm_metric(c: LocalCluster, node: str) -> float:
    _, _, body = c.http_get(node, "/metrics")
    [value] = re.findall(rb'^registry_storage_alarm\{kind="nospace"\} (\S+)$', body, re.M)
    return float(value)


def register_refused(c: LocalCluster, via: str, name: str) -> grpc.RpcError:
    return rpc_error(
        lambda: c.stub(via).Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")), timeout=5
        )
    )


def test_disk_below_reserve_refuses_writes_until_space_is_freed(
    cluster_on_tmpfs: LocalCluster,
) -> None:
    c = cluster_on_tmpfs
    victim = c.wait_ready()  # the leader: it must also hand leadership over
    others = [n for n in c.ids if n != victim]
    acked = [f"full/a/{i}" for i in range(10)]
    register(c, victim, acked)
    assert alarms(c, victim) == [] and alarm_metric(c, victim) == 0

    filler = fill(c.nodes[victim].data_dir, leave=RESERVE - MIB)
    wait_for("the storage alarm in /status", lambda: alarms(c, victim) or None, timeout=5)
    [alarm] = alarms(c, victim)
    assert alarm["kind"] == "nospace" and alarm["reserve_bytes"] == RESERVE
    assert alarm_metric(c, victim) == 1

    err = register_refused(c, victim, "full/refused")
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = str(err.details())
    data_dir = re.escape(str(c.nodes[victim].data_dir))
    assert re.fullmatch(
        rf"disk full on {victim} \({data_dir}: \d+\.\d MiB free, reserve 4\.0 MiB\): "
        "writes refused until space is freed",
        details,
    ), details
    metadata = [(str(m.key), str(m.value)) for m in err.trailing_metadata() or ()]
    assert ("registry-reason", "NOSPACE") in metadata
    typed = translate(err.code(), details, metadata)
    assert isinstance(typed, StorageFull) and typed.reason == "NOSPACE"

    # The leader hands leadership over; the cluster keeps taking writes elsewhere, and
    # the victim keeps replicating them into its reserve.
    wait_for(
        "a leader other than the node with the alarm",
        lambda: all(c.status(n).leader in others for n in c.ids),
        timeout=10,
    )
    more = [f"full/b/{i}" for i in range(10)]
    register(c, others[0], more)
    # Reads and status keep working on the victim; writes through it are still refused.
    where = c.stub(victim).WhereIs(pb.WhereIsRequest(name=acked[0]), timeout=RPC_TIMEOUT_S)
    assert where.HasField("location")
    assert c.http_json(victim)["node"] == victim
    assert register_refused(c, victim, "full/refused").code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "full/refused" not in names_on(c, others[0])

    filler.unlink()
    wait_for("the alarm to clear", lambda: alarms(c, victim) == [], timeout=5)
    assert alarm_metric(c, victim) == 0
    after = [f"full/c/{i}" for i in range(5)]
    register(c, victim, after)

    expected = sorted(acked + more + after)
    wait_for(
        "every node to hold every acknowledged name (and nothing refused)",
        lambda: all(names_on(c, n) == expected for n in c.ids),
        timeout=10,
    )
    assert not c.crashed()


def test_a_write_that_hits_enospc_stops_the_node(cluster_on_tmpfs: LocalCluster) -> None:
    c = cluster_on_tmpfs
    leader = c.wait_ready()
    victim = next(n for n in c.ids if n != leader)
    acked = [f"enospc/a/{i}" for i in range(5)]
    register(c, leader, acked)
    filler = fill(c.nodes[victim].data_dir, leave=0)

    # The leader replicates into the follower, whose disk has no room left at all: the
    # write (or its fsync) fails and the follower stops, whatever the alarm says.
    for i in range(200):
        if not c.nodes[victim].running:
            break
        name = f"enospc/b/{i}"
        register(c, leader, [name])
        acked.append(name)
    code = c.wait_exit(victim, timeout=10)
    assert code == EXIT_STORAGE_IO
    log = c.nodes[victim].log_path.read_text()
    assert "Traceback" not in log, log
    [line] = [x for x in log.splitlines() if "exiting with code 74:" in x]
    assert re.search(r"storage IO error on \S+: \[Errno 28\] No space left on device", line)

    filler.unlink()
    c.restart(victim)  # a write cut short is a torn tail: cut at start, nothing acked lost
    wait_for(
        "the restarted node to hold every acknowledged name",
        lambda: names_on(c, victim) == sorted(acked),
        timeout=20,
    )
