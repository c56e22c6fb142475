"""The registry state machine: results, holders, tokens, failover, handoff, snapshots."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from registry.core.commands import (
    Command,
    Join,
    Leave,
    MemberDown,
    MemberUp,
    NameSpec,
    Priority,
    Register,
    Released,
    Releases,
    Unregister,
)
from registry.core.placement import Placement
from registry.core.state import (
    MAX_NAME_BYTES,
    MAX_REGISTER_BATCH,
    Code,
    NameRecord,
    RegistryState,
    Result,
    StartReason,
)


class Log:
    """A RegistryState fed with consecutive log indexes."""

    def __init__(self, *nodes: str, first_index: int = 1) -> None:
        self.state = RegistryState()
        self.index = first_index - 1
        self.incarnation: dict[str, int] = {}
        for node in nodes:
            self.up(node)

    def apply(self, command: Command) -> Result:
        self.index += 1
        return self.state.apply(self.index, command)

    def up(
        self,
        node: str,
        incarnation: int | None = None,
        *,
        roles: tuple[str, ...] = (),
        kinds: tuple[str, ...] = (),
    ) -> Result:
        inc = incarnation if incarnation is not None else self.incarnation.get(node, 1)
        result = self.apply(MemberUp(node=node, incarnation=inc, roles=roles, kinds=kinds))
        if result.ok:
            self.incarnation[node] = inc
        return result

    def down(self, node: str, incarnation: int | None = None) -> Result:
        inc = incarnation if incarnation is not None else self.incarnation[node]
        return self.apply(MemberDown(node=node, incarnation=inc))

    def register(self, *names: str, **kw: Any) -> Result:
        return self.apply(Register(specs=tuple(NameSpec(name=n, kind="k", **kw) for n in names)))

    def record(self, name: str) -> NameRecord:
        return self.state.names[name]

    def release(self, name: str, state: bytes | None = None, token: int | None = None) -> Result:
        tok = token if token is not None else self.record(name).token
        return self.apply(Released(name=name, token=tok, state=state))


def content(state: RegistryState) -> dict[str, Any]:
    """The snapshot without ``applied_index`` (which every apply moves)."""
    body: dict[str, Any] = json.loads(state.snapshot())
    del body["applied_index"]
    return body


def assert_unchanged(log: Log, command: Command, code: Code) -> Result:
    before = content(log.state)
    result = log.apply(command)
    assert result.code is code, result
    assert result.message, "a refusal must say why"
    assert content(log.state) == before, "a refused command must change nothing"
    return result


NAMES = [f"w{i}" for i in range(30)]


# -- register --------------------------------------------------------------------------


def test_register_assigns_the_placement_owner_with_the_log_index_as_token() -> None:
    log = Log("n1", "n2", "n3")
    result = log.register(*NAMES)
    assert result.ok and result.code is Code.OK
    index = log.index
    expected_placement = Placement()
    candidates = {n: m.candidate() for n, m in log.state.members.items()}
    holders = set()
    for name in NAMES:
        record = log.record(name)
        owner = expected_placement.owner(record.spec, candidates, epoch=1)
        assert record.holder == owner == log.state.owner(name)
        assert record.holder_incarnation == 1
        assert record.token == index
        assert record.reason is StartReason.NEW
        assert record.state is None
        activation = log.state.activations_for(record.holder, 1)[name]
        assert activation.token == index and activation.reason is StartReason.NEW
        holders.add(record.holder)
    assert holders == {"n1", "n2", "n3"}
    assert log.state.waiting() == []
    assert sum(len(log.state.activations_for(n, 1)) for n in ("n1", "n2", "n3")) == len(NAMES)


def test_register_keeps_args_and_roles() -> None:
    log = Log("n1", "n2")
    log.up("n2", roles=("web",))
    spec = NameSpec(name="a", kind="k", args=b"\x00\x01", roles=("web",))
    assert log.apply(Register(specs=(spec,))).ok
    assert log.record("a").spec == spec
    assert log.record("a").holder == "n2"
    activation = log.state.activations_for("n2", 1)["a"]
    assert activation.args == b"\x00\x01" and activation.kind == "k"


def test_register_many_is_all_or_nothing_when_one_name_exists() -> None:
    log = Log("n1", "n2")
    assert log.register("b").ok
    before = content(log.state)
    result = log.register("a", "b", "c")
    assert result.code is Code.ALREADY_EXISTS
    assert "'b'" in result.message
    assert content(log.state) == before
    assert set(log.state.names) == {"b"}


def test_register_many_with_a_duplicate_in_the_batch_is_invalid() -> None:
    log = Log("n1")
    before = content(log.state)
    result = log.register("a", "b", "a")
    assert result.code is Code.INVALID_ARGUMENT
    assert "twice" in result.message
    assert content(log.state) == before


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * (MAX_NAME_BYTES + 1), "longer than 255 bytes"),
        ("é" * 128, "longer than 255 bytes"),  # 128 characters, 256 bytes
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("del\x7f", "control characters"),
        ("c1\x85", "control characters"),
        ("lone\ud800surrogate", "not valid UTF-8"),
        ("\udfff", "not valid UTF-8"),
    ],
)
def test_invalid_names_are_refused_and_change_nothing(name: str, why: str) -> None:
    log = Log("n1")
    log.register("existing")
    result = assert_unchanged(
        log,
        Register(specs=(NameSpec(name="fine", kind="k"), NameSpec(name=name, kind="k"))),
        Code.INVALID_ARGUMENT,
    )
    assert why in result.message
    assert "fine" not in log.state.names


@pytest.mark.parametrize("name", ["x" * MAX_NAME_BYTES, "é" * 127 + "a", "名" * 85, "a b/c:d"])
def test_names_up_to_the_limit_are_fine(name: str) -> None:
    log = Log("n1")
    assert log.register(name).ok
    assert log.record(name).holder == "n1"


def test_invalid_kind_empty_batch_huge_batch_and_empty_priority_are_refused() -> None:
    log = Log("n1")
    bad_kind = Register(specs=(NameSpec(name="a", kind=""),))
    assert (
        "kind must not be empty" in assert_unchanged(log, bad_kind, Code.INVALID_ARGUMENT).message
    )
    assert_unchanged(log, Register(specs=()), Code.INVALID_ARGUMENT)
    huge = Register(
        specs=tuple(NameSpec(name=f"n{i}", kind="k") for i in range(MAX_REGISTER_BATCH + 1))
    )
    assert "limit" in assert_unchanged(log, huge, Code.INVALID_ARGUMENT).message
    for priority in [(), ((),), ((), ())]:
        empty = Register(specs=(NameSpec(name="a", kind="k", priority=priority),))
        assert "priority" in assert_unchanged(log, empty, Code.INVALID_ARGUMENT).message


def test_a_full_batch_at_the_limit_is_accepted() -> None:
    log = Log("n1", "n2")
    result = log.apply(
        Register(specs=tuple(NameSpec(name=f"n{i}", kind="k") for i in range(MAX_REGISTER_BATCH)))
    )
    assert result.ok
    assert len(log.state.names) == MAX_REGISTER_BATCH


def test_a_kind_or_roles_no_member_can_host_is_a_failed_precondition() -> None:
    log = Log()
    log.up("n1", kinds=("video",), roles=("web",))
    log.up("n2", kinds=("chat",))
    for spec in [
        NameSpec(name="a", kind="game"),
        NameSpec(name="a", kind="chat", roles=("web",)),
        NameSpec(name="a", kind="video", roles=("gpu",)),
        NameSpec(name="a", kind="video", priority=(("n2",),)),
        NameSpec(name="a", kind="video", priority=(("nobody",),)),
    ]:
        result = assert_unchanged(log, Register(specs=(spec,)), Code.FAILED_PRECONDITION)
        assert "'a'" in result.message and spec.kind in result.message
    assert log.apply(Register(specs=(NameSpec(name="a", kind="video", roles=("web",)),))).ok


def test_with_no_members_at_all_registration_is_refused_as_transient() -> None:
    log = Log()
    result = assert_unchanged(
        log, Register(specs=(NameSpec(name="a", kind="k"),)), Code.UNAVAILABLE
    )
    assert "no member has joined" in result.message


# -- unregister, join, leave -----------------------------------------------------------


def test_unregister_removes_the_name_its_activation_and_its_groups() -> None:
    log = Log("n1")
    log.register("a", "b")
    assert log.apply(Join(group="g", name="a")).ok
    assert log.apply(Join(group="h", name="a")).ok
    assert log.apply(Join(group="g", name="b")).ok
    assert log.apply(Unregister(name="a")).ok
    assert log.state.registered("a") is None, "gone for clients at once"
    assert "a" not in log.state.activations_for("n1", 1), "its holder must stop it"
    assert log.state.groups == {"g": {"b"}}, "h emptied and went away"
    assert_unchanged(log, Unregister(name="a"), Code.NOT_FOUND)
    assert_unchanged(log, Join(group="g", name="a"), Code.NOT_FOUND)
    # Until the holder confirms the stop, the name cannot be taken again...
    retry = log.apply(Register(specs=(NameSpec(name="a", kind="k"),)))
    assert retry.code is Code.FAILED_PRECONDITION and "still stopping on n1" in retry.message
    token = log.state.names["a"].token
    assert log.apply(Released(name="a", token=token, state=None)).ok
    assert "a" not in log.state.names
    # ...and once it has, it can.
    assert log.apply(Register(specs=(NameSpec(name="a", kind="k"),))).ok


def test_unregistered_name_is_freed_when_its_holder_goes_down() -> None:
    log = Log("n1", "n2")
    log.register("a")
    holder = log.state.names["a"].holder
    assert log.apply(Unregister(name="a")).ok
    assert "a" in log.state.names
    log.down(holder)
    assert "a" not in log.state.names, "a down holder surely stopped it"


def test_unregister_of_a_waiting_name_forgets_it() -> None:
    log = Log("n1")
    log.register("a")
    log.down("n1")
    assert log.state.waiting() == ["a"]
    assert log.apply(Unregister(name="a")).ok
    assert log.state.waiting() == []
    log.up("n1", 2)
    assert log.state.activations_for("n1", 2) == {}


def test_join_and_leave_results() -> None:
    log = Log("n1")
    log.register("a")
    assert_unchanged(log, Join(group="g", name="nope"), Code.NOT_FOUND)
    assert log.apply(Join(group="g", name="a")).ok
    assert log.state.groups == {"g": {"a"}}
    assert log.record("a").groups == {"g"}
    result = assert_unchanged(log, Join(group="g", name="a"), Code.ALREADY_EXISTS)
    assert "'g'" in result.message
    assert_unchanged(log, Join(group="", name="a"), Code.INVALID_ARGUMENT)
    assert_unchanged(log, Join(group="bad\x00", name="a"), Code.INVALID_ARGUMENT)
    assert_unchanged(log, Leave(group="other", name="a"), Code.NOT_FOUND)
    log.register("b")
    assert_unchanged(log, Leave(group="g", name="b"), Code.NOT_FOUND)
    assert log.apply(Leave(group="g", name="a")).ok
    assert log.state.groups == {}
    assert log.record("a").groups == set()
    assert_unchanged(log, Leave(group="g", name="a"), Code.NOT_FOUND)


# -- failover --------------------------------------------------------------------------


def held(log: Log, node: str) -> list[str]:
    return [r.spec.name for r in log.state.held_by(node)]


def test_member_down_fails_its_names_over_with_the_down_index_as_token() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    victims = held(log, "n2")
    others = {n: (log.record(n).holder, log.record(n).token) for n in NAMES if n not in victims}
    assert victims
    assert log.down("n2").ok
    down_index = log.index
    assert log.state.epoch == down_index
    for name in victims:
        record = log.record(name)
        assert record.holder in ("n1", "n3")
        assert record.holder == log.state.owner(name)
        assert record.token == down_index
        assert record.reason is StartReason.FAILOVER
        assert log.state.activations_for(record.holder, 1)[name].reason is StartReason.FAILOVER
    for name, (holder, token) in others.items():
        assert (log.record(name).holder, log.record(name).token) == (holder, token), "untouched"
    assert held(log, "n2") == []
    assert not log.state.members["n2"].up
    assert [m.node for m in log.state.up_members()] == ["n1", "n3"]


def test_member_down_drops_handed_over_state() -> None:
    log = Log("n1", "n2")
    log.register(*NAMES)
    name = held(log, "n1")[0]
    log.down("n1")
    log.up("n1", 2)
    assert log.record(name).holder == "n2", "owner is n1 again, but n2 holds it until released"
    log.release(name, b"state")
    assert (log.record(name).holder, log.record(name).state) == ("n1", b"state")
    log.down("n1", 2)
    record = log.record(name)
    assert record.holder == "n2"
    assert record.state is None
    assert record.reason is StartReason.FAILOVER
    assert log.state.activations_for("n2", 1)[name].state is None


def test_failover_with_nowhere_to_go_waits_without_the_state() -> None:
    log = Log("n1")
    log.register("a")
    log.up("n1", 2)
    log.up("n1", 2, kinds=("other",))  # n1 holds "a" but may no longer own it
    log.release("a", b"state")
    log.up("n1", 2)
    assert log.record("a").state == b"state"
    log.down("n1", 2)
    assert log.state.waiting() == ["a"]
    assert log.record("a").state is None, "a failover never carries handed-over state"
    log.up("n1", 3)
    assert (log.record("a").reason, log.record("a").state) == (StartReason.FAILOVER, None)


@pytest.mark.parametrize("incarnation", [0, 2, 7])
def test_member_down_for_another_incarnation_is_stale(incarnation: int) -> None:
    log = Log("n1", "n2")
    log.register(*NAMES)
    result = assert_unchanged(log, MemberDown(node="n1", incarnation=incarnation), Code.STALE)
    assert "down" in result.message


def test_member_down_twice_or_for_an_unknown_node_is_stale() -> None:
    log = Log("n1", "n2")
    log.register(*NAMES)
    assert log.down("n1").ok
    assert_unchanged(log, MemberDown(node="n1", incarnation=1), Code.STALE)
    assert_unchanged(log, MemberDown(node="zz", incarnation=1), Code.STALE)


def test_names_wait_without_an_eligible_member_and_are_assigned_when_one_comes_up() -> None:
    log = Log("n1")
    log.up("n2", kinds=("other",))
    log.register("a", "b")
    log.down("n1")
    assert log.state.waiting() == ["a", "b"]
    assert log.record("a").holder == ""
    assert log.state.owner("a") is None
    assert log.state.activations_for("n2", 1) == {}
    log.up("n3", kinds=("k",))
    assert log.state.waiting() == []
    for name in ("a", "b"):
        assert log.record(name).holder == "n3"
        assert log.record(name).token == log.index
        assert log.record(name).reason is StartReason.FAILOVER


def test_a_name_registered_while_nobody_can_run_it_waits_and_starts_new() -> None:
    log = Log("n1")
    log.down("n1")
    assert log.register("a").ok, "n1 is down but could run it: accept and wait"
    assert log.state.waiting() == ["a"]
    log.up("n1", 2)
    assert log.record("a").holder == "n1"
    assert log.record("a").holder_incarnation == 2
    assert log.record("a").reason is StartReason.NEW
    assert log.record("a").token == log.index


# -- view changes and handoff ----------------------------------------------------------


def test_member_up_that_changes_the_owner_does_not_move_the_name() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    before = {n: (log.record(n).holder, log.record(n).token) for n in NAMES}
    assert log.up("n4").ok
    assert log.state.epoch == log.index
    moving = [n for n in NAMES if log.state.owner(n) == "n4"]
    assert moving, "the newcomer should own some names"
    for name in NAMES:
        assert (log.record(name).holder, log.record(name).token) == before[name]
    for node in ("n1", "n2", "n3"):
        listed = [r.spec.name for r in log.state.moving_from(node, 1)]
        assert listed == sorted(n for n in moving if before[n][0] == node)
    assert log.state.moving_from("n4", 1) == []
    assert log.state.moving_from("n1", 2) == [], "another incarnation holds nothing"


def test_released_hands_the_name_to_the_owner_with_the_state() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    log.up("n4")
    name = next(n for n in NAMES if log.state.owner(n) == "n4")
    old_holder, old_token = log.record(name).holder, log.record(name).token
    assert log.release(name, b"counter=41").ok
    record = log.record(name)
    assert record.holder == "n4"
    assert record.token == log.index > old_token
    assert record.reason is StartReason.HANDOFF
    assert record.state == b"counter=41"
    assert name not in log.state.activations_for(old_holder, 1)
    activation = log.state.activations_for("n4", 1)[name]
    assert (activation.reason, activation.state) == (StartReason.HANDOFF, b"counter=41")
    assert log.state.moving_from(old_holder, 1) == [
        r for r in log.state.moving_from(old_holder, 1) if r.spec.name != name
    ]


def test_releases_in_one_entry_act_as_the_same_releases_one_by_one() -> None:
    """Apart from the token (one entry's index for all), a batch is the sequence."""
    batched, single = Log("n1", "n2", "n3"), Log("n1", "n2", "n3")
    for log in (batched, single):
        log.register(*NAMES)
        log.up("n4")
    moving = [n for n in NAMES if batched.state.owner(n) == "n4"]
    assert len(moving) >= 3
    items = [
        Released(name=n, token=batched.record(n).token, state=f"s{i}".encode() if i else None)
        for i, n in enumerate(moving)
    ]
    stale = Released(name=NAMES[0], token=10**6, state=b"x")  # changes nothing, as alone
    assert batched.apply(Releases(items=(*items, stale))).ok
    for item in items:
        assert single.release(item.name, item.state).ok
    assert single.apply(stale).code is Code.STALE
    for name in NAMES:
        a, b = batched.record(name), single.record(name)
        assert (a.holder, a.reason, a.state) == (b.holder, b.reason, b.state), name
        if name in moving:
            assert a.token == batched.index, "the batch's entry activated it"
    assert (
        batched.state.activations_for("n4", 1).keys()
        == single.state.activations_for("n4", 1).keys()
    )


def test_released_without_state_restarts_at_the_owner() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    log.up("n4")
    name = next(n for n in NAMES if log.state.owner(n) == "n4")
    assert log.release(name, None).ok
    record = log.record(name)
    assert (record.holder, record.reason, record.state) == ("n4", StartReason.RESTART, None)
    assert record.token == log.index


def test_released_with_empty_state_is_a_handoff_not_a_restart() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    log.up("n4")
    name = next(n for n in NAMES if log.state.owner(n) == "n4")
    log.release(name, b"")
    assert (log.record(name).reason, log.record(name).state) == (StartReason.HANDOFF, b"")


def test_stale_released_changes_nothing() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    log.up("n4")
    name = next(n for n in NAMES if log.state.owner(n) == "n4")
    old_token = log.record(name).token
    log.release(name, b"s")
    assert_unchanged(log, Released(name=name, token=old_token, state=b"again"), Code.STALE)
    assert_unchanged(log, Released(name=name, token=log.index + 5, state=None), Code.STALE)
    assert_unchanged(log, Released(name="unknown", token=1, state=None), Code.STALE)


def test_released_for_a_waiting_name_is_stale() -> None:
    log = Log("n1")
    log.register("a")
    token = log.record("a").token
    log.down("n1")
    assert log.state.waiting() == ["a"]
    assert_unchanged(log, Released(name="a", token=token, state=b"x"), Code.STALE)


def test_released_while_nobody_can_take_it_waits_with_its_state() -> None:
    log = Log("n1", "n2")
    log.register(*NAMES)
    name = held(log, "n1")[0]
    log.down("n2")
    log.up("n1", kinds=("other",))  # same incarnation: n1 keeps holding, but cannot own
    assert log.record(name).holder == "n1"
    assert log.state.owner(name) is None
    assert [r.spec.name for r in log.state.moving_from("n1", 1)] == held(log, "n1")
    assert log.release(name, b"later").ok
    assert name in log.state.waiting()
    assert log.record(name).holder == ""
    assert log.record(name).state == b"later"
    log.up("n2", 2)
    record = log.record(name)
    assert (record.holder, record.reason, record.state) == ("n2", StartReason.HANDOFF, b"later")
    assert record.token == log.index


def test_member_up_with_a_new_incarnation_fails_over_that_nodes_names() -> None:
    log = Log("n1", "n2", "n3")
    log.register(*NAMES)
    victims = held(log, "n2")
    assert log.up("n2", 2).ok
    index = log.index
    for name in victims:
        record = log.record(name)
        assert record.token == index
        assert record.reason is StartReason.FAILOVER
        assert (record.holder, record.holder_incarnation) == (
            log.state.owner(name),
            1 + (record.holder == "n2"),
        )
    assert log.state.activations_for("n2", 1) == {}, "the old incarnation holds nothing"
    assert set(log.state.activations_for("n2", 2)) == set(victims), "the ring did not change"


def test_member_up_results() -> None:
    log = Log("n1", "n2")
    log.register(*NAMES)
    log.up("n1", 3)
    epoch = log.state.epoch
    assert_unchanged(log, MemberUp(node="n1", incarnation=2), Code.STALE)
    same = log.apply(MemberUp(node="n1", incarnation=3))
    assert same.ok and log.state.epoch == epoch, "an identical MemberUp changes nothing"
    log.up("n1", 3, roles=("web",))
    assert log.state.epoch == log.index, "a role change is a view change"
    assert log.state.members["n1"].roles == frozenset({"web"})


def test_priority_takeover_goes_through_a_handoff() -> None:
    log = Log("a", "b", "c")
    prio: Priority = (("a",), ("b", "c"))
    log.register("sched", priority=prio)
    assert log.record("sched").holder == "a"
    log.down("a")
    fallback = log.record("sched").holder
    assert fallback in ("b", "c")
    log.up("a", 2)
    assert log.state.owner("sched") == "a"
    assert log.record("sched").holder == fallback, "takeover waits for the release"
    assert [r.spec.name for r in log.state.moving_from(fallback, 1)] == ["sched"]
    log.release("sched", b"st")
    assert (log.record("sched").holder, log.record("sched").holder_incarnation) == ("a", 2)
    assert log.record("sched").reason is StartReason.HANDOFF


def test_activations_for_respects_the_incarnation() -> None:
    log = Log("n1")
    log.register("a")
    assert set(log.state.activations_for("n1", 1)) == {"a"}
    assert log.state.activations_for("n1", 2) == {}
    assert log.state.activations_for("n1", 0) == {}
    assert log.state.activations_for("zz", 1) == {}
    log.up("n1", 2)
    assert log.state.activations_for("n1", 1) == {}
    assert set(log.state.activations_for("n1", 2)) == {"a"}


def test_tokens_are_log_indexes_even_with_an_offset_log() -> None:
    log = Log("n1", "n2", first_index=1000)
    log.register("a")
    assert log.record("a").token == 1002


# -- snapshots -------------------------------------------------------------------------


def busy_log() -> Log:
    log = Log("n1", "n2", "n3")
    log.up("n4", roles=("gpu",), kinds=("k", "v"))
    log.register(*NAMES[:20])
    log.apply(
        Register(
            specs=(
                NameSpec(name="gpu-job", kind="v", args=b"\xff\x00", roles=("gpu",)),
                NameSpec(name="prio", kind="k", priority=(("n9",), ("n3", "n1"))),
            )
        )
    )
    log.apply(Join(group="g", name="w1"))
    log.apply(Join(group="g", name="w2"))
    log.apply(Join(group="h", name="w1"))
    log.down("n2")
    log.up("n2", 2)
    for record in list(log.state.moving_from("n1", 1))[:2]:
        log.release(record.spec.name, b"state-" + record.spec.name.encode())
    log.down("n4")  # gpu-job waits
    return log


def test_snapshot_restore_gives_an_identical_state() -> None:
    log = busy_log()
    state = log.state
    assert state.waiting() == ["gpu-job"], "the test should cover waiting names"
    assert any(r.state for r in state.names.values()), "and handed-over state"
    data = state.snapshot()
    copy = RegistryState.restore(data)
    assert copy.snapshot() == data
    assert (copy.epoch, copy.applied_index) == (state.epoch, state.applied_index)
    assert copy.waiting() == state.waiting()
    assert copy.groups == state.groups
    for node in ("n1", "n2", "n3", "n4"):
        for inc in (1, 2):
            assert copy.activations_for(node, inc) == state.activations_for(node, inc)
            assert copy.moving_from(node, inc) == state.moving_from(node, inc)
    for name in state.names:
        assert copy.owner(name) == state.owner(name)


def test_a_restored_state_applies_the_next_commands_exactly_like_the_original() -> None:
    log = busy_log()
    copy = RegistryState.restore(log.state.snapshot())
    follow_up: list[Command] = [
        MemberUp(node="n4", incarnation=2, roles=("gpu",)),
        Unregister(name="w1"),
        MemberDown(node="n3", incarnation=1),
        Register(specs=(NameSpec(name="late", kind="k"),)),
    ]
    for command in follow_up:
        log.index += 1
        assert log.state.apply(log.index, command) == copy.apply(log.index, command)
        assert copy.snapshot() == log.state.snapshot()


def test_restore_of_empty_data_is_an_empty_state() -> None:
    state = RegistryState.restore(b"")
    assert state.names == {} and state.members == {} and state.epoch == 0
    assert state.snapshot() == RegistryState().snapshot()


# -- randomized ------------------------------------------------------------------------

NODES = ["n1", "n2", "n3", "n4", "n5"]
POOL = [f"r{i}" for i in range(40)]


def random_command(rng: random.Random, state: RegistryState) -> Command:
    roll = rng.random()
    if roll < 0.30:
        specs = []
        for name in rng.sample(POOL, rng.choice([1, 1, 1, 3])):
            priority: Priority | None = None
            if rng.random() < 0.2:
                priority = tuple(
                    tuple(rng.sample(NODES, rng.randint(1, 2))) for _ in range(rng.randint(1, 2))
                )
            specs.append(
                NameSpec(
                    name=name,
                    kind=rng.choice(["k", "k", "v"]),
                    roles=rng.choice([(), (), ("web",)]),
                    priority=priority,
                )
            )
        return Register(specs=tuple(specs))
    if roll < 0.38:
        return Unregister(name=rng.choice(POOL))
    if roll < 0.45:
        group, name = rng.choice(["g1", "g2"]), rng.choice(POOL)
        return Join(group=group, name=name) if rng.random() < 0.6 else Leave(group=group, name=name)
    if roll < 0.62:
        node = rng.choice(NODES)
        known = state.members.get(node)
        inc = (known.incarnation if known else 1) + rng.choice([-1, 0, 0, 1, 1])
        return MemberUp(
            node=node,
            incarnation=inc,
            roles=rng.choice([(), ("web",)]),
            kinds=rng.choice([(), (), ("k",), ("v",)]),
        )
    if roll < 0.75:
        node = rng.choice(NODES)
        known = state.members.get(node)
        inc = (known.incarnation if known else 1) + rng.choice([0, 0, 0, -1, 1])
        return MemberDown(node=node, incarnation=inc)
    held = [r for r in state.names.values() if r.holder]
    if not held:
        return Unregister(name=rng.choice(POOL))
    record = rng.choice(held)
    token = record.token if rng.random() < 0.8 else record.token - rng.randint(1, 3)
    return Released(name=record.spec.name, token=token, state=rng.choice([None, b"", b"s"]))


def check_invariants(state: RegistryState, index: int, tokens: dict[str, int]) -> None:
    up = {m.node: m.incarnation for m in state.up_members()}
    waiting = set(state.waiting())
    for name, record in state.names.items():
        if record.holder:
            assert name not in waiting, name
            assert up.get(record.holder) == record.holder_incarnation, (
                f"{name} held by {record.holder}/{record.holder_incarnation}, up: {up}"
            )
            entitled = name in state.activations_for(record.holder, record.holder_incarnation)
            assert entitled != record.unregistering, "an unregistered name must be stopped"
            if record.reason is not StartReason.HANDOFF:
                assert record.state is None, name
        else:
            assert not record.unregistering, f"{name}: nobody left to confirm its stop"
            assert name in waiting, f"{name} has no holder and is not waiting"
            assert state.owner(name) is None, f"{name} waits although {state.owner(name)} could"
        if record.holder:
            # G2: an activation's token is the index that made it, above every earlier one.
            last = tokens.get(name, 0)
            assert record.token >= last, f"{name}: token went back from {last}"
            if record.token != last:
                assert record.token == index, f"{name} got token {record.token} at {index}"
            tokens[name] = record.token
        for group in record.groups:
            assert name in state.groups[group]
    assert waiting <= set(state.names)
    for node in NODES:
        assert {r.spec.name for r in state.held_by(node)} == {
            n for n, r in state.names.items() if r.holder == node
        }
    for group, names in state.groups.items():
        assert names, f"empty group {group} kept"
        for name in names:
            assert group in state.names[name].groups


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_commands_keep_every_invariant(seed: int) -> None:
    rng = random.Random(seed)
    state = RegistryState()
    tokens: dict[str, int] = {}
    """Highest token each name (including earlier registrations) ever had."""
    codes: dict[Code, int] = {}
    reasons: set[StartReason] = set()
    for index in range(1, 501):
        command = random_command(rng, state)
        result = state.apply(index, command)
        codes[result.code] = codes.get(result.code, 0) + 1
        assert state.applied_index == index
        if isinstance(command, Unregister) and result.ok:
            assert state.registered(command.name) is None
            record = state.names.get(command.name)
            assert record is None or (record.unregistering and record.holder)
        check_invariants(state, index, tokens)
        reasons |= {r.reason for r in state.names.values() if r.holder}
        if index % 100 == 0:
            copy = RegistryState.restore(state.snapshot())
            assert copy.snapshot() == state.snapshot()
    # The walk must have exercised the interesting paths, or it proves little.
    assert codes.get(Code.OK, 0) > 150
    for code in (Code.ALREADY_EXISTS, Code.NOT_FOUND, Code.STALE, Code.FAILED_PRECONDITION):
        assert codes.get(code, 0) > 0, code
    assert reasons >= {StartReason.NEW, StartReason.FAILOVER, StartReason.HANDOFF}
    copy = RegistryState.restore(state.snapshot())
    assert copy.snapshot() == state.snapshot()
    for node in NODES:
        inc = state.members[node].incarnation if node in state.members else 1
        for i in (inc - 1, inc):
            assert copy.activations_for(node, i) == state.activations_for(node, i)
    assert copy.waiting() == state.waiting()
