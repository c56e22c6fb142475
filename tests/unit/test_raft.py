"""Classic Raft cases, each a short script on a synchronous network (tests/unit/raftnet.py)."""

from __future__ import annotations

import pytest

from registry.core.config import RaftConfig
from registry.core.errors import (
    ConfChangeInProgress,
    ConfigError,
    NotLeader,
    ProposalRejected,
    TransferInProgress,
)
from registry.core.messages import (
    ConfChange,
    ConfChangeType,
    Entry,
    Handover,
    MemberSilence,
    Message,
    MessageType,
    Role,
)
from registry.core.progress import Progress
from registry.core.raft import RawNode
from tests.unit.raftnet import Net

IDS3 = ["n1", "n2", "n3"]


def settle(net: Net, ticks: int = 60) -> None:
    for _ in range(ticks):
        net.tick()
        if len(net.leaders()) == 1 and all(r.leader for r in net.nodes.values()):
            return
    raise AssertionError(f"no stable leader after {ticks} ticks: {net.terms()}")


def test_three_nodes_elect_one_leader_and_replicate() -> None:
    net = Net(IDS3)
    settle(net)
    leader = net.leader()
    assert leader.term == 2, "bootstrap is term 1; with pre-vote the first election wins term 2"
    index = leader.propose(b"hello")
    net.pump()
    for node in IDS3:
        assert net.data_applied(node) == [b"hello"]
    assert leader.commit_index == index


def test_follower_refuses_proposals_and_names_the_leader() -> None:
    net = Net(IDS3)
    settle(net)
    leader = net.leader()
    follower = next(r for r in net.nodes.values() if r is not leader)
    with pytest.raises(NotLeader) as err:
        follower.propose(b"x")
    assert err.value.leader == leader.id
    assert leader.id in str(err.value)


def test_stale_leader_cannot_commit_and_its_entries_are_overwritten() -> None:
    net = Net(IDS3)
    net.elect("n1")
    old = net.nodes["n1"]
    stale_term = old.term
    net.isolate("n1")
    stale_index = old.propose(b"lost")
    net.pump()
    net.tick(40)
    assert old.commit_index < stale_index, "an isolated leader must not commit"
    new = net.leader() if net.leaders() == ["n1"] else None
    new_leaders = [n for n in net.leaders() if n != "n1"]
    assert len(new_leaders) == 1 and new is None, "the majority elects a new leader"
    assert old.role is not Role.LEADER, "check-quorum made the isolated leader step down"
    assert old.term == stale_term, "pre-vote kept the isolated node's term"
    winner = net.nodes[new_leaders[0]]
    winner.propose(b"kept")
    net.pump()
    net.heal()
    net.tick(10)
    for node in IDS3:
        assert b"lost" not in net.data_applied(node)
        assert b"kept" in net.data_applied(node)
    assert b"lost" not in [e.data for e in net.disks["n1"].entries], "conflict truncated"


# Figure 7 of the Raft paper: the leader of term 8 and the logs of followers a–f.
FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def test_figure7_leader_brings_every_follower_log_in_line() -> None:
    logs = {"leader": FIGURE7_LEADER, **FIGURE7_FOLLOWERS}
    net = Net(["leader", *FIGURE7_FOLLOWERS], logs=logs, terms={"leader": 7, "d": 7})
    leader = net.elect("leader")
    assert leader.term == 8
    leader.propose(b"x")
    net.pump()
    net.tick(5)
    expected = [*FIGURE7_LEADER, 8, 8]
    for node in net.ids:
        assert net.log_terms(node) == expected, node
    assert leader.commit_index == len(expected)


@pytest.mark.parametrize("voter", ["d", "c"])
def test_figure7_more_up_to_date_logs_refuse_their_vote(voter: str) -> None:
    logs = {"leader": FIGURE7_LEADER, **FIGURE7_FOLLOWERS}
    net = Net(["leader", *FIGURE7_FOLLOWERS], logs=logs, terms={"leader": 7, "d": 7})
    net.elect("leader")
    votes = [
        m
        for m in net.sent
        if m.type is MessageType.VOTE_RESP and m.src == voter and m.dst == "leader"
    ]
    assert votes and all(m.reject for m in votes)


def test_figure8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    # S1 led term 2 and put index 2 on S2; S5 led term 3 and wrote its own index 2.
    logs = {"s1": [1, 2], "s2": [1, 2], "s3": [1], "s4": [1], "s5": [1, 3]}
    net = Net(["s1", "s2", "s3", "s4", "s5"], logs=logs, terms={"s1": 3, "s5": 3})
    for node in ("s1", "s2", "s3", "s4", "s5"):
        net.disks[node].hard_state = net.disks[node].hard_state.__class__(
            term=net.disks[node].hard_state.term, commit=1
        )
        net.restart(node)
    net.isolate("s5")

    def strip_new_term(msg: Message) -> Message | None:
        # Followers see only the term-2 entry, never the leader's new term-4 entry.
        if msg.type is MessageType.APPEND and msg.entries:
            kept = tuple(e for e in msg.entries if e.term < 4)
            from dataclasses import replace

            return replace(msg, entries=kept)
        return msg

    net.filters.append(strip_new_term)
    leader = net.elect("s1")
    assert leader.term == 4
    net.tick(3)
    assert [net.log_terms(n)[:2] for n in ("s1", "s2", "s3")] == [[1, 2]] * 3
    assert leader.commit_index == 1, "index 2 sits on a majority but is from term 2"
    net.filters.clear()
    net.tick(3)
    assert leader.commit_index == 3, "once the term-4 entry replicates, both commit"


def test_rejoining_partitioned_node_does_not_bump_the_term_with_pre_vote() -> None:
    net = Net(IDS3)
    settle(net)
    term = net.leader().term
    lonely = next(n for n in IDS3 if net.nodes[n].role is not Role.LEADER)
    net.isolate(lonely)
    net.tick(100)
    assert net.nodes[lonely].term == term
    assert net.nodes[lonely].role is Role.PRE_CANDIDATE
    net.heal()
    net.tick(5)
    assert net.terms() == {n: term for n in IDS3}
    assert net.nodes[lonely].leader == net.leader().id


def test_without_pre_vote_a_rejoining_node_disrupts_the_leader() -> None:
    """The counterpart that shows the previous test can fail."""
    net = Net(IDS3, pre_vote=False, check_quorum=False)
    settle(net)
    term = net.leader().term
    lonely = next(n for n in IDS3 if net.nodes[n].role is not Role.LEADER)
    net.isolate(lonely)
    net.tick(100)
    assert net.nodes[lonely].term > term + 3
    net.heal()
    net.tick(60)
    assert net.leader().term > term


def test_follower_ignores_votes_while_its_leader_is_live() -> None:
    net = Net(IDS3)
    net.elect("n1")
    net.tick(2)
    follower = net.nodes["n2"]
    before = follower.term
    follower.step(
        Message(
            type=MessageType.VOTE,
            src="n3",
            dst="n2",
            term=before + 5,
            index=follower.last_index,
            log_term=follower.term_at(follower.last_index) or 0,
        )
    )
    assert follower.term == before and not follower.has_ready()


def test_a_follower_that_forgets_its_leader_votes_at_once() -> None:
    net = Net(IDS3)
    net.elect("n1")
    net.tick(2)
    follower = net.nodes["n2"]
    before = follower.term
    follower.forget_leader()
    follower.step(
        Message(
            type=MessageType.VOTE,
            src="n3",
            dst="n2",
            term=before + 5,
            index=follower.last_index,
            log_term=follower.term_at(follower.last_index) or 0,
        )
    )
    assert follower.term == before + 5
    votes = [m for m in follower.ready().messages if m.type is MessageType.VOTE_RESP]
    assert [(m.dst, m.reject) for m in votes] == [("n3", False)], "it grants the vote"
    leader = net.nodes["n1"]
    leader.forget_leader()
    assert leader.role is Role.LEADER and not leader.has_ready(), "a leader ignores it"


def test_snapshot_installed_in_chunks_in_the_middle_of_replication() -> None:
    net = Net(IDS3, snapshot_threshold=10, snapshot_chunk_bytes=100)
    net.elect("n1")
    leader = net.nodes["n1"]
    net.isolate("n3")
    for k in range(30):
        leader.propose(f"v{k}".encode())
        net.pump()
    assert leader.snapshot_meta.index > 0, "leader compacted its log"
    lagging = net.nodes["n3"]
    assert lagging.last_index < leader.snapshot_meta.index
    net.heal()
    for k in range(30, 35):  # replication continues while the snapshot is installed
        leader.propose(f"v{k}".encode())
        net.tick()
    net.tick(10)
    chunks = [m for m in net.sent if m.type is MessageType.SNAPSHOT and m.dst == "n3"]
    assert len(chunks) >= 3, "the snapshot went out in several chunks"
    assert "n3" in net.app_snapshots
    assert lagging.commit_index == leader.commit_index
    assert lagging.term_at(leader.last_index) == leader.term_at(leader.last_index)
    assert net.data_applied("n3")[-5:] == [f"v{k}".encode() for k in range(30, 35)]


def test_membership_change_while_partitioned() -> None:
    net = Net([*IDS3, "n4"], voters=IDS3)
    leader = net.elect("n1")
    net.pump()
    net.isolate("n3")
    leader.propose_conf_change(ConfChange(type=ConfChangeType.REMOVE, node="n3"))
    net.tick(2)
    assert leader.conf.voters == {"n1", "n2"}
    with pytest.raises(ProposalRejected, match="already a voter"):
        leader.propose_conf_change(ConfChange(type=ConfChangeType.ADD_VOTER, node="n2"))
    leader.propose_conf_change(ConfChange(type=ConfChangeType.ADD_LEARNER, node="n4"))
    with pytest.raises(ConfChangeInProgress):
        leader.propose_conf_change(ConfChange(type=ConfChangeType.ADD_VOTER, node="n4"))
    net.tick(2)
    leader.propose_conf_change(ConfChange(type=ConfChangeType.ADD_VOTER, node="n4"))
    net.tick(2)
    assert net.nodes["n4"].conf.voters == {"n1", "n2", "n4"}
    term = leader.term
    net.heal()
    net.tick(60)
    assert leader.role is Role.LEADER and leader.term == term, "removed n3 cannot disrupt"
    leader.propose(b"after")
    net.pump()
    for node in ("n1", "n2", "n4"):
        assert b"after" in net.data_applied(node)
    # A minority-side leader cannot commit a membership change.
    net.partition(["n1"], ["n2", "n4"])
    leader.propose_conf_change(ConfChange(type=ConfChangeType.REMOVE, node="n2"))
    index = leader.last_index
    net.tick(5)
    assert leader.commit_index < index


def test_removed_leader_steps_down_after_the_change_commits() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.tick(2)
    leader.propose_conf_change(ConfChange(type=ConfChangeType.REMOVE, node="n1"))
    net.tick(2)
    assert leader.role is Role.FOLLOWER
    net.tick(60, nodes=["n2", "n3"])
    survivors = [n for n in net.leaders() if n != "n1"]
    assert len(survivors) == 1


def test_a_leader_that_removed_itself_has_a_caught_up_voter_campaign_at_once() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.tick(2)
    note = Handover(prior="n2", members=(MemberSilence(node="n3", ticks=7, acked=True),))
    leader.handover_note = lambda: note
    term = leader.term
    leader.propose_conf_change(ConfChange(type=ConfChangeType.REMOVE, node="n1"))
    net.pump()  # no tick: no election timer can run out meanwhile
    assert leader.role is Role.FOLLOWER
    successor = net.leader()
    assert successor.id in ("n2", "n3") and successor.term == term + 1
    (timeout_now,) = [m for m in net.sent if m.type is MessageType.TIMEOUT_NOW]
    assert (timeout_now.src, timeout_now.dst, timeout_now.term) == ("n1", successor.id, term)
    assert timeout_now.handover == note, "the application's note rides along"


def test_leadership_transfer_to_a_lagging_follower() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.isolate("n3")
    for k in range(5):
        leader.propose(f"v{k}".encode())
    net.pump()
    net.heal()
    assert leader.lease_remaining() > 0, "n1 and n2 acked: the leader holds its lease"
    leader.transfer_leadership("n3")
    assert leader.lease_remaining() == 0, "a transferring leader gives up its lease"
    with pytest.raises(TransferInProgress):
        leader.propose(b"during")
    net.pump()
    assert net.leader().id == "n3"
    assert net.nodes["n3"].term == leader.term
    net.tick(2)
    assert net.data_applied("n3")[-5:] == [f"v{k}".encode() for k in range(5)]


def test_leadership_transfer_to_an_unreachable_target_is_abandoned() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.isolate("n3")
    leader.transfer_leadership("n3")
    net.tick(leader.cfg.election_tick + 1, nodes=["n1"])
    assert leader.role is Role.FOLLOWER
    net.tick(60, nodes=["n1", "n2"])
    assert len([n for n in net.leaders() if n in ("n1", "n2")]) == 1


def test_lease_ends_before_another_leader_is_elected() -> None:
    net = Net(IDS3)
    net.elect("n1")
    old = net.nodes["n1"]
    net.tick(3)
    assert old.lease_remaining() > 0
    net.isolate("n1")
    for _ in range(80):
        net.tick()
        others = [n for n in net.leaders() if n != "n1"]
        if others:
            assert old.lease_remaining() == 0, "two nodes believed they led at once"
    assert [n for n in net.leaders() if n != "n1"], "a new leader was elected"


def test_check_quorum_steps_down_an_isolated_leader() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.isolate("n1")
    windows = leader.cfg.check_quorum_windows
    net.tick(leader.cfg.election_tick * (windows + 1) + 1, nodes=["n1"])
    assert leader.role is Role.FOLLOWER


def _until_quorum_checked(leader: RawNode, net: Net, nodes: list[str]) -> None:
    """Tick ``nodes`` until the leader has just run its check-quorum (bounded)."""
    for _ in range(leader.cfg.election_tick + 1):
        net.tick(1, nodes=nodes)
        if leader._election_elapsed == 0:
            return
    raise AssertionError("the leader never ran its check-quorum")


def test_one_stalled_voter_for_one_election_timeout_costs_no_step_down() -> None:
    """Rule 2: four voters, one paused for good (no quorum slack), and one more whose
    process stalls for one whole check-quorum window (its ticks do not run, it hears
    nothing). The leader keeps leading in the same term once the stalled voter answers
    again; stepping down would only start an election needing that same voter. Two
    windows of silence in a row still step it down."""
    ids = ["n1", "n2", "n3", "n4"]
    net = Net(ids)
    leader = net.elect("n1")
    term = leader.term
    net.isolate("n4")  # paused: never ticked again
    live = ["n1", "n2", "n3"]
    _until_quorum_checked(leader, net, live)
    net.tick(leader.cfg.heartbeat_tick, nodes=live)  # n3 answers within this window
    net.partition(["n1", "n2"], ["n3"], ["n4"])  # n3 stalls: it hears nothing, ticks not
    _until_quorum_checked(leader, net, ["n1", "n2"])  # (passes: n3 answered)
    net.tick(leader.cfg.election_tick, nodes=["n1", "n2"])  # one whole window, n3 silent
    assert leader._election_elapsed == 0, "the test must span exactly one whole window"
    net.heal()
    net.isolate("n4")
    net.tick(leader.cfg.election_tick * 3, nodes=live)
    assert leader.role is Role.LEADER, "one quiet window made the leader step down"
    assert {net.nodes[n].term for n in live} == {term}, "an election happened"
    # Silence for check_quorum_windows windows in a row does step it down.
    _until_quorum_checked(leader, net, live)
    net.partition(["n1", "n2"], ["n3"], ["n4"])
    # (+1 window: heartbeat answers that arrived just after the check count for the next)
    windows = leader.cfg.check_quorum_windows + 1
    net.tick(leader.cfg.election_tick * windows, nodes=["n1", "n2"])
    assert net.nodes["n1"].role is Role.FOLLOWER


def test_read_index_on_leader_and_follower() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.tick(2)
    leader.propose(b"a")
    net.pump()
    leader.read_index(7)
    net.pump()
    assert net.read_states["n1"] == [(leader.commit_index, 7)]
    net.nodes["n2"].read_index(9)
    net.pump()
    assert net.read_states["n2"] == [(leader.commit_index, 9)]


def test_read_index_waits_for_quorum() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    net.tick(2)
    net.isolate("n1")
    leader.read_index(1)
    net.pump()
    assert net.read_states["n1"] == [], "no quorum acked: a deposed leader must not serve"


def test_restart_keeps_term_vote_and_log() -> None:
    net = Net(IDS3)
    leader = net.elect("n1")
    for k in range(3):
        leader.propose(f"v{k}".encode())
    net.pump()
    term = net.nodes["n2"].term
    net.crash("n2")
    raft = net.restart("n2")
    assert raft.term == term
    assert raft.last_index == leader.last_index
    assert net.data_applied("n2") == [b"v0", b"v1", b"v2"]


def test_restarted_voter_honours_the_lease_it_acked() -> None:
    net = Net(IDS3)
    net.elect("n1")
    net.tick(2)
    net.crash("n2")
    restarted = net.restart("n2")
    restarted.step(
        Message(
            type=MessageType.PRE_VOTE,
            src="n3",
            dst="n2",
            term=restarted.term + 1,
            index=restarted.last_index,
            log_term=restarted.term_at(restarted.last_index) or 0,
        )
    )
    assert not restarted.has_ready(), "a just-restarted voter ignores votes for a while"


def test_single_node_commits_alone() -> None:
    net = Net(["solo"])
    net.tick(30)
    leader = net.leader()
    leader.propose(b"x")
    net.pump()
    assert net.data_applied("solo") == [b"x"]
    leader.read_index(3)
    net.pump()
    assert net.read_states["solo"] == [(leader.commit_index, 3)]


def test_config_validation_names_the_contradiction() -> None:
    with pytest.raises(ConfigError, match="election_tick"):
        RaftConfig(node_id="n1", election_tick=2, heartbeat_tick=2).validate()
    with pytest.raises(ConfigError, match="both voter and learner"):
        RaftConfig(node_id="n1", voters=frozenset({"n1"}), learners=frozenset({"n1"})).validate()
    with pytest.raises(ConfigError, match="node_id"):
        RaftConfig(node_id="").validate()


def test_lease_is_shorter_than_the_stickiness_window_under_drift() -> None:
    cfg = RaftConfig(node_id="n1", election_tick=10, max_drift=0.05)
    lease = cfg.lease_ticks()
    # A leader clock 5 % slow and a follower clock 5 % fast, one tick of granularity.
    assert lease / (1 - 0.05) <= (cfg.election_tick - 1) / (1 + 0.05)
    assert lease >= 1


def test_lost_appends_with_a_full_inflight_window_do_not_stall_replication() -> None:
    """Found by the simulator (seed 19, 5 nodes, small batches): APPENDs lost while a
    follower's in-flight window is full left it stalled forever. A heartbeat response now
    frees a slot; the follower rejects the gap and the leader probes back."""
    net = Net(IDS3, max_inflight=2, max_entries_per_msg=1)
    leader = net.elect("n1")
    net.tick(2)
    dropping = {"on": True}

    def lose_appends_to_n3(msg: Message) -> Message | None:
        lost = dropping["on"] and msg.type is MessageType.APPEND and msg.dst == "n3"
        return None if lost else msg

    net.filters.append(lose_appends_to_n3)
    for k in range(6):
        leader.propose(f"v{k}".encode())
    net.pump()
    dropping["on"] = False
    net.tick(10)
    assert net.nodes["n3"].commit_index == leader.commit_index
    assert net.data_applied("n3") == [f"v{k}".encode() for k in range(6)]


def test_deaf_ticks_run_the_lease_down_but_not_the_failure_detectors() -> None:
    """A stalled process catches up its ticks as ``deaf``: they must not count as
    silence from the others (no needless election, no check-quorum step-down), yet the
    leader's lease must still run out in real time."""
    net = Net(IDS3)
    leader = net.elect("n1")
    net.tick(2)
    assert leader.lease_remaining() > 0
    follower = net.nodes["n2"]
    stall = leader.cfg.election_tick * 3
    for _ in range(stall):
        follower.tick(deaf=True)
        leader.tick(deaf=True)
    assert follower.role is Role.FOLLOWER and follower.term == leader.term
    assert leader.role is Role.LEADER, "deaf ticks tripped check-quorum"
    assert leader.lease_remaining() == 0, "the lease must expire on deaf ticks too"
    # The same number of ordinary ticks of silence does trip both detectors.
    net.isolate("n1")
    net.tick(stall, nodes=["n1", "n2"])
    roles = {node: net.nodes[node].role for node in ("n1", "n2")}
    assert roles["n1"] is Role.FOLLOWER, "ordinary silence trips check-quorum"
    assert roles["n2"] is not Role.FOLLOWER, "ordinary silence starts a (pre-)campaign"


def test_appends_are_capped_in_bytes_and_an_oversized_entry_travels_alone() -> None:
    """Issue 16: an APPEND carries at most ``max_bytes_per_msg`` bytes of entries (so a
    batch of large entries never passes the peer message limit); an entry larger than the
    cap still goes, alone; the follower ends with every entry."""
    net = Net(IDS3, max_bytes_per_msg=2500)
    leader = net.elect("n1")
    net.tick(2)
    net.sent.clear()
    sizes = [1000, 1000, 1000, 4000, 1000, 1000]
    for k, size in enumerate(sizes):
        leader.propose(bytes([k]) * size)
    net.pump()
    net.tick(4)
    batches = [
        [len(e.data) for e in m.entries]
        for m in net.sent
        if m.type is MessageType.APPEND and m.dst == "n2" and m.entries
    ]
    assert [size for batch in batches for size in batch] == sizes  # all, in order, once
    assert all(sum(b) <= 2500 or len(b) == 1 for b in batches), batches
    assert [4000] in batches
    assert net.data_applied("n2")[-len(sizes) :] == [bytes([k]) * s for k, s in enumerate(sizes)]


def test_inflight_bytes_pause_a_follower_until_it_acknowledges() -> None:
    progress = Progress()
    progress.become_replicate()
    assert not progress.is_paused(max_inflight=10, max_inflight_bytes=100)
    progress.sent_entries(1, 150)  # one APPEND is always allowed, however large
    assert progress.is_paused(max_inflight=10, max_inflight_bytes=100)
    progress.free_inflight(1)
    assert progress.inflight_bytes == 0
    assert not progress.is_paused(max_inflight=10, max_inflight_bytes=100)


def test_a_leader_counts_its_own_entry_only_once_persisted() -> None:
    """Rule 7 (Raft thesis §10.2.1): the leader may replicate an entry before its own
    fsync, so its own copy must not count toward the commit until ``advance`` says it
    is on disk. A lone voter is its own quorum: the entry commits only after it."""
    net = Net(["n1"])
    settle(net)
    leader = net.leader()
    before = leader.commit_index
    index = leader.propose(b"x")
    assert leader.commit_index == before, "committed an entry that is not on disk"
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [index]
    assert index not in [e.index for e in rd.committed], "applied before it was persisted"
    leader.advance(rd)
    assert leader.commit_index == index
    rd = leader.ready()
    assert [e.index for e in rd.committed] == [index]
    leader.advance(rd)


def test_only_a_leaders_appends_may_go_out_before_its_persist() -> None:
    net = Net(IDS3)
    settle(net)
    leader = net.leader()
    leader.propose(b"x")
    rd = leader.ready()
    assert rd.appends_before_persist
    assert {m.type for m in rd.messages} == {MessageType.APPEND}
    assert all(m.entries for m in rd.messages)
    leader.advance(rd)
    net.pump()
    follower = net.nodes[next(n for n in IDS3 if n != leader.id)]
    follower.step(  # an APPEND: the follower must persist it before it acknowledges
        Message(
            type=MessageType.APPEND,
            src=leader.id,
            dst=follower.id,
            term=leader.term,
            index=leader.last_index,
            log_term=leader.term,
            entries=(Entry(term=leader.term, index=leader.last_index + 1, data=b"y"),),
            commit=leader.commit_index,
        )
    )
    rd = follower.ready()
    assert not rd.appends_before_persist
    assert [m.type for m in rd.messages] == [MessageType.APPEND_RESP]
    follower.advance(rd)
    follower.campaign()  # a (pre-)candidate's requests wait for its persist too
    rd = follower.ready()
    assert {m.type for m in rd.messages} == {MessageType.PRE_VOTE}
    assert not rd.appends_before_persist
    follower.advance(rd)


# -- rule 9: who led before -------------------------------------------------------------


def _split_vote(net: Net, a: str, b: str) -> int:
    """``a`` and ``b`` time out together: both win pre-votes, each votes for itself in
    the next term, and nobody leads it. Returns that leaderless term."""
    for node in (a, b):
        net.nodes[node].forget_leader()
    for node in (a, b):
        net.nodes[node].campaign()
    net.pump()
    assert net.leaders() == [], "a split vote"
    assert net.nodes[a].term == net.nodes[b].term
    return net.nodes[a].term


def test_a_split_vote_after_the_leader_s_loss_still_names_the_last_leader_s_term() -> None:
    net = Net(IDS3)
    term = net.elect("n1").term
    net.crash("n1")
    assert _split_vote(net, "n2", "n3") == term + 1
    net.nodes["n2"].campaign()
    net.pump()
    winner = net.nodes["n2"]
    assert winner.role is Role.LEADER and winner.term == term + 2
    assert winner.prior_leader_term == term, "term + 1 had no leader"
    assert net.nodes["n3"].prior_leader_term == 0, "only a leader answers"


def test_a_leader_only_one_voter_followed_is_reported_by_that_voter() -> None:
    """n3 never heard the leader of term T + 1 (n2), but n1 did: n1's vote for n3 in
    T + 2 says so, and n3 must not take n1 for the last leader."""
    net = Net(IDS3)
    term = net.elect("n1").term
    net.isolate("n3")
    net.nodes["n1"].transfer_leadership("n2")
    net.pump()
    net.tick(2)
    assert net.nodes["n2"].role is Role.LEADER and net.nodes["n2"].term == term + 1
    assert net.nodes["n3"].term == term
    net.crash("n2")
    net.heal()
    net.nodes["n1"].forget_leader()
    net.nodes["n3"].forget_leader()
    # n3's log lags (the leader's empty entry of term + 1), so n1 refuses it; n1 wins.
    net.nodes["n3"].campaign()
    net.pump()
    assert net.nodes["n3"].role is not Role.LEADER
    net.nodes["n1"].campaign()
    net.pump()
    leader = net.nodes["n1"]
    assert leader.role is Role.LEADER
    assert leader.prior_leader_term == term + 1, "n1 itself followed n2 in term + 1"


def _win_with_report(report: int) -> RawNode:
    """n3, which last knew n1 lead, wins with n2's vote reporting ``report``."""
    net = Net(IDS3)
    net.elect("n1")
    net.crash("n1")
    net.crash("n2")
    n3 = net.nodes["n3"]
    n3.forget_leader()
    n3.campaign()
    net.pump()
    for kind in (MessageType.PRE_VOTE_RESP, MessageType.VOTE_RESP):
        term = n3.term + (kind is MessageType.PRE_VOTE_RESP)
        n3.step(Message(type=kind, src="n2", dst="n3", term=term, context=report))
    assert n3.role is Role.LEADER
    return n3


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_a_voter_that_followed_a_later_leader_raises_the_prior_term(offset: int) -> None:
    """The winner's own memory is not the last word: a voter may have followed a leader
    the winner never heard of (its lease quorum meets every electing quorum)."""
    known = _win_with_report(0).term - 1
    assert _win_with_report(known + offset).prior_leader_term == known + offset


def test_granted_votes_report_the_voter_s_last_leader_term_and_pre_votes_do_not() -> None:
    net = Net(IDS3)
    term = net.elect("n1").term
    net.crash("n1")
    net.sent.clear()
    net.nodes["n2"].forget_leader()
    net.nodes["n3"].forget_leader()
    net.nodes["n2"].campaign()
    net.pump()
    votes = (MessageType.PRE_VOTE_RESP, MessageType.VOTE_RESP)
    answers = {m.type: m.context for m in net.sent if m.src == "n3" and m.type in votes}
    assert answers == {MessageType.PRE_VOTE_RESP: 0, MessageType.VOTE_RESP: term}


def test_a_restarted_voter_cannot_vouch_so_the_prior_term_is_unknown() -> None:
    net = Net(IDS3)
    term = net.elect("n1").term
    net.crash("n1")
    net.crash("n3")
    net.restart("n3")  # it knew n1 led, but forgot it with the restart
    for node in ("n2", "n3"):
        net.nodes[node].forget_leader()
    net.nodes["n2"].campaign()
    net.pump()
    winner = net.nodes["n2"]
    assert winner.role is Role.LEADER and winner.term == term + 1
    assert winner.prior_leader_term == 0
