"""The Raft harness's parts (hash chain, simulated disk) and proof that the whole
simulation catches real bugs when they are injected into Raft or into storage."""

from __future__ import annotations

from functools import partial

import pytest

from registry.core.config import RaftConfig
from registry.core.log import RaftLog
from registry.core.messages import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from registry.sim.engine.disk import IllegalWrite, RaftDisk
from registry.sim.engine.nemesis import Nemesis
from registry.sim.raft.hashchain import MIN_SNAPSHOT_BYTES, CorruptSnapshot, HashChain
from registry.sim.raft.runner import run_raft_seed
from registry.sim.runner import run_seeds


def chain(n: int) -> HashChain:
    app = HashChain()
    for i in range(1, n + 1):
        app.apply(Entry(index=i, term=1, data=f"value-{i}".encode()))
    return app


def test_hash_chain_snapshot_round_trip() -> None:
    app = chain(50)
    data = app.encode()
    assert len(data) >= MIN_SNAPSHOT_BYTES
    back = HashChain.decode(data)
    assert (back.index, back.count, back.digest) == (50, 50, app.digest)
    assert list(back.values) == list(app.values) and len(back.values) == 32
    nxt = Entry(index=51, term=2, data=b"next")
    assert back.apply(nxt) == app.apply(nxt)


def test_hash_chain_rejects_misassembled_snapshots() -> None:
    data = chain(5).encode()
    with pytest.raises(CorruptSnapshot):
        HashChain.decode(data[:256] + data[512:] + data[256:512])  # chunks out of order
    with pytest.raises(CorruptSnapshot):
        HashChain.decode(data[:-1])
    with pytest.raises(CorruptSnapshot):
        HashChain.decode(b"nonsense")


def test_digest_commits_to_the_prefix() -> None:
    a, b = HashChain(), HashChain()
    a.apply(Entry(index=1, term=1, data=b"x"))
    b.apply(Entry(index=1, term=2, data=b"x"))
    assert a.digest != b.digest


def snap(index: int) -> Snapshot:
    return Snapshot(meta=SnapshotMeta(index=index, term=1, conf=ConfState()), data=b"s")


def test_disk_follows_the_ready_contract() -> None:
    disk = RaftDisk()
    assert disk.load() is None
    disk.append(tuple(Entry(index=i, term=1) for i in range(1, 6)))
    disk.append((Entry(index=4, term=2),))  # truncates 4..5 first
    assert [(e.index, e.term) for e in disk.entries] == [(1, 1), (2, 1), (3, 1), (4, 2)]
    disk.compact(snap(2))
    assert [e.index for e in disk.entries] == [3, 4] and disk.offset == 2
    disk.install_snapshot(snap(10))
    assert disk.entries == [] and disk.last_index == 10
    disk.save_hard_state(HardState(term=3, vote="n1", commit=10))
    loaded = disk.load()
    assert loaded is not None and loaded.hard_state.vote == "n1"


def test_disk_refuses_impossible_writes() -> None:
    disk = RaftDisk()
    disk.append((Entry(index=1, term=1),))
    with pytest.raises(IllegalWrite, match="gap"):
        disk.append((Entry(index=3, term=1),))
    disk.save_hard_state(HardState(term=2, vote="n1"))
    with pytest.raises(IllegalWrite, match="vote in term 2"):
        disk.save_hard_state(HardState(term=2, vote="n2"))
    with pytest.raises(IllegalWrite, match="term moves back"):
        disk.save_hard_state(HardState(term=1))
    with pytest.raises(IllegalWrite, match="past the stored log"):
        disk.compact(snap(5))


def _failing_kinds(nodes: int, seeds: range) -> set[str]:
    results = run_seeds(partial(run_raft_seed, nodes=nodes, duration_s=30.0), seeds)
    return {v.split("[", 1)[1].split("]", 1)[0] for r in results for v in r.violations}


def test_sim_catches_a_lease_that_outlives_stickiness(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leader lease longer than the followers' stickiness window must be caught."""
    monkeypatch.setattr(RaftConfig, "lease_ticks", lambda self: self.election_tick + 3)
    assert "leader-lease" in _failing_kinds(3, range(10))


def test_sim_catches_votes_for_stale_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Granting votes without the up-to-date check (§5.4.1) elects leaders that lack
    committed entries; the leader-completeness checker must say so."""
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    assert "leader-completeness" in _failing_kinds(3, range(10))


def test_sim_catches_entries_lost_by_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RaftDisk.append

    def lossy(self: RaftDisk, entries: tuple[Entry, ...]) -> None:
        original(self, entries[:-1] if len(entries) > 1 else entries)

    monkeypatch.setattr(RaftDisk, "append", lossy)
    assert "exception" in _failing_kinds(3, range(2))


def test_sim_reports_a_cluster_that_never_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the calm phase cannot produce a leader, liveness fails with the cluster state."""

    def no_calm(self: Nemesis) -> None:
        self._world.network.split([[n] for n in self._world.node_ids])

    monkeypatch.setattr(Nemesis, "calm", no_calm)
    [result] = run_seeds(partial(run_raft_seed, nodes=3, duration_s=5.0, calm_bound_s=3.0), [1])
    assert result.liveness_s is None
    [liveness] = [v for v in result.violations if "[liveness]" in v]
    assert "within 3.000s of calm" in liveness and "n1:" in liveness
    assert result.replay_command().endswith("--calm-bound 3")
