"""Backup and restore (issue 17): ``registry snapshot save`` from a running cluster (asked
of a follower, which relays the leader's consistent snapshot), ``registry snapshot
restore`` into a fresh 3-node cluster with a new cluster id: every name is there, runs
again, and its fencing token is above the one it had before. A damaged file is refused."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from registry.cli import main
from registry.testing.local_cluster import LocalCluster, call_until, wait_for
from registry.v1 import registry_pb2 as pb
from tests.ops.membership_support import placements

NAMES = [f"b-{i}" for i in range(60)]


def test_save_and_restore_into_a_new_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "backup.snap"
    with LocalCluster(tmp_path / "old", 3, preset="local") as old:
        leader = old.start()
        follower = next(n for n in old.ids if n != leader)
        specs = [pb.NameSpec(name=n, kind="echo") for n in NAMES]
        old.stub(leader).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=10)
        before = wait_for("every name placed", lambda: _all_placed(old, leader), 15)
        started = time.monotonic()
        assert main(["snapshot", "save", str(backup), "--addr", old.nodes[follower].grpc_addr]) == 0
        print(
            f"\nsnapshot save: {time.monotonic() - started:.2f} s ({backup.stat().st_size} bytes)"
        )
        assert f"{len(NAMES)} names" in capsys.readouterr().out

    new = LocalCluster(tmp_path / "new", 3, preset="local")
    with new:
        peers = ",".join(f"{n}={p.grpc_addr}" for n, p in new.nodes.items())
        started = time.monotonic()
        for node in new.ids:
            argv = ["snapshot", "restore", str(backup), "--data-dir", str(new.nodes[node].data_dir)]
            argv += ["--id", node, "--peers", peers, "--cluster-id", new.cluster_id]
            assert main(argv) == 0
        print(f"snapshot restore x3: {time.monotonic() - started:.2f} s")
        started = time.monotonic()
        leader = new.start(timeout=30)
        after = wait_for("every restored name placed", lambda: _all_placed(new, leader), 20)
        print(f"restored cluster up with every name placed in {time.monotonic() - started:.2f} s")
        assert set(after) == set(before)
        for name, (holder, token) in after.items():
            assert holder in new.ids and token > before[name][1], (name, before[name], holder)
        assert call_until(new, leader, NAMES[0], b"hi", timeout=10).payload == b"hi"


def _all_placed(c: LocalCluster, via: str) -> dict[str, tuple[str, int]] | None:
    seen = placements(c, via)
    return seen if set(seen) == set(NAMES) and all(h for h, _ in seen.values()) else None


def test_restore_refuses_a_damaged_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from registry.core.state import RegistryState
    from registry.node.backup import SnapshotFile

    body = RegistryState().snapshot()
    raw = SnapshotFile(
        index=7, term=2, cluster_id="c", names=0, sha256=hashlib.sha256(body).hexdigest(), body=body
    ).encode()
    damaged = tmp_path / "damaged.snap"
    damaged.write_bytes(raw[:-2] + bytes([raw[-2] ^ 1]) + raw[-1:])
    data_dir = tmp_path / "n1"
    argv = ["snapshot", "restore", str(damaged), "--data-dir", str(data_dir)]
    assert main([*argv, "--id", "n1", "--peers", "n1=127.0.0.1:7400"]) == 2
    assert "is damaged" in capsys.readouterr().err
    assert not data_dir.exists()
