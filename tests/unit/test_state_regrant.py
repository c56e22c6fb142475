"""A member that comes back with a new incarnation, otherwise unchanged (it re-fenced):
``RegistryState._regrant`` re-grants the names it still owns in place instead of failing
every one over and placing it again. The outcome must be the old path's, record for
record: ``Reference`` below is the state machine with the old path (fail every name over,
then place the waiting names), and both must end in the same snapshot, the same
touched names and the same holder sets, over shapes with roles, kinds and priorities,
names held away from their owner (a handoff still pending) and names being
unregistered."""

from __future__ import annotations

import random

import pytest

from registry.core.command_types import MemberUp, NameSpec, Register, Released, Unregister
from registry.core.commands import Command
from registry.core.state import RegistryState

NODES = ("n1", "n2", "n3")
ROLES = ((), ("web",), ("batch",))


class Reference(RegistryState):
    """The state machine as it was: a new incarnation fails every name over."""

    def _view_changed(self, index: int, regrant: str = "") -> None:
        if regrant:
            self._fail_over_holder(regrant)
        super()._view_changed(index)


def _member(node: str, incarnation: int, roles: tuple[str, ...] = ()) -> MemberUp:
    return MemberUp(
        node=node,
        incarnation=incarnation,
        address=f"{node}:1",
        roles=roles,
        kinds=("echo", "counter"),
    )


def _history(seed: int) -> list[Command]:
    rng = random.Random(seed)
    commands: list[Command] = [
        _member(n, 1, ("web", "batch") if n != "n3" else ("web",)) for n in NODES
    ]
    specs = []
    for i in range(300):
        priority = None
        if rng.random() < 0.2:
            priority = (("n1",), ("n2", "n3")) if rng.random() < 0.5 else (("n3",), ("n1",))
        specs.append(
            NameSpec(
                name=f"w{i}",
                kind=rng.choice(("echo", "counter")),
                roles=rng.choice(ROLES),
                priority=priority,
            )
        )
    commands.append(Register(specs=tuple(specs)))
    # A fourth member: names it owns stay where they are until handed off.
    commands.append(_member("n4", 1, ("web", "batch")))
    commands += [Unregister(name=f"w{i}") for i in rng.sample(range(300), 20)]
    return commands


def replay(seed: int, *states: RegistryState) -> int:
    """Apply ``_history(seed)`` to each of ``states``; returns the last index."""
    index = 0
    for command in _history(seed):
        index += 1
        for state in states:
            state.apply(index, command)
    return index


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("node", ["n1", "n2", "n3"])
def test_a_regrant_in_place_ends_where_failing_everything_over_did(seed: int, node: str) -> None:
    fast, reference = RegistryState(), Reference()
    index = replay(seed, fast, reference)
    assert fast.snapshot() == reference.snapshot()
    fast.take_touched()
    reference.take_touched()
    held_before = fast.held_count(node)
    assert held_before > 0
    roles = reference.members[node].roles
    back = MemberUp(
        node=node,
        incarnation=2,
        address=f"{node}:1",
        roles=tuple(sorted(roles)),
        kinds=("echo", "counter"),
    )
    index += 1
    assert fast.apply(index, back) == reference.apply(index, back)
    assert fast.snapshot() == reference.snapshot()
    assert fast.take_touched() == reference.take_touched()
    for n in (*NODES, "n4"):
        assert set(fast.held_names(n)) == set(reference.held_names(n)), n
    regranted = [r for r in fast.names.values() if r.holder == node]
    assert regranted, "some names stay on the node"
    assert all(r.token == index and r.holder_incarnation == 2 for r in regranted)


@pytest.mark.parametrize("seed", range(4))
def test_the_batch_owner_lookup_agrees_with_owner_of(seed: int) -> None:
    """``owners()`` (one ring per shape, for a full reconcile) answers what ``owner_of``
    answers, record for record, priorities and roles included."""
    state = RegistryState()
    for index, command in enumerate(_history(seed), start=1):
        state.apply(index, command)
    owner = state.owners()
    records = list(state.names.values())
    assert {state.owner_of(r) for r in records} >= {"n1", "n2", "n3", "n4"}
    assert [owner(r) for r in records] == [state.owner_of(r) for r in records]


@pytest.mark.parametrize("seed", range(4))
def test_the_live_count_is_the_count_of_names_not_being_unregistered(seed: int) -> None:
    """``live_count`` (O(1), asked by every status call) against a scan, through
    unregistrations, a re-fence that deletes names being unregistered, releases and a
    snapshot round trip."""
    state = RegistryState()

    def scanned(s: RegistryState) -> int:
        return sum(1 for r in s.names.values() if not r.unregistering)

    index = 0
    for command in _history(seed):
        index += 1
        state.apply(index, command)
        assert state.live_count() == scanned(state)
    assert state.live_count() < len(state.names), "some names are being unregistered"
    restored = RegistryState.restore(state.snapshot())
    assert restored.live_count() == scanned(restored) == state.live_count()
    index += 1
    state.apply(index, _member("n1", 2, ("web", "batch")))
    assert state.live_count() == scanned(state)
    for record in [r for r in state.names.values() if r.unregistering]:
        index += 1
        state.apply(index, Released(name=record.spec.name, token=record.token))
    assert state.live_count() == scanned(state) == len(state.names)


@pytest.mark.parametrize("seed", range(4))
def test_the_name_index_lists_what_a_sort_of_every_name_lists(seed: int) -> None:
    """``names_with_prefix`` (the sorted index ``List``, watches and snapshots use)
    against sorting every name, through registrations, unregistrations, deletions at a
    re-fence and releases, and after a snapshot round trip."""
    state = RegistryState()

    def check(s: RegistryState) -> None:
        for prefix in ("", "w", "w1", "w12", "w299", "x", "w9"):
            want = [n for n in sorted(s.names) if n.startswith(prefix)]
            assert list(s.names_with_prefix(prefix)) == want, prefix

    index = 0
    for command in _history(seed):
        index += 1
        state.apply(index, command)
        check(state)
    index += 1
    state.apply(index, _member("n1", 2, ("web", "batch")))
    for record in [r for r in state.names.values() if r.unregistering]:
        index += 1
        state.apply(index, Released(name=record.spec.name, token=record.token))
    check(state)
    assert len(list(state.names_with_prefix(""))) < 300, "some names were deleted"
    restored = RegistryState.restore(state.snapshot())
    check(restored)
    assert restored.snapshot() == state.snapshot()
