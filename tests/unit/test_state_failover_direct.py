"""A member declared down: ``RegistryState._fail_over_to_owners`` places each of its names
on its owner in one pass instead of putting every one into the waiting sets and placing
the waiting names after the view change. The outcome must be the old path's, record for
record: ``Reference`` is the state machine with the old path, and both must end in the
same snapshot, touched names, holder sets, waiting names and start reasons — over shapes
with roles, kinds and priorities, names held away from their owner (a handoff still
pending), names being unregistered, and downs that leave some shapes with no owner."""

from __future__ import annotations

import pytest

from registry.core.command_types import MemberDown
from registry.core.state import RegistryState
from tests.unit.test_state_regrant import NODES, replay

ALL = (*NODES, "n4")


class Reference(RegistryState):
    """The state machine as it was: every name of a down member waits, then the waiting
    names are placed."""

    def _fail_over_to_owners(self, node: str, index: int) -> None:
        self._fail_over_holder(node)
        self._assign_waiting(index)


def _same(fast: RegistryState, reference: RegistryState) -> None:
    assert fast.snapshot() == reference.snapshot()
    assert fast.take_touched() == reference.take_touched()
    assert fast.waiting() == reference.waiting()
    assert fast._waiting_reason == reference._waiting_reason
    assert fast._waiting_by_shape == reference._waiting_by_shape
    for node in ALL:
        assert set(fast.held_names(node)) == set(reference.held_names(node)), node
    assert [r.placed_epoch for r in fast.names.values()] == [
        r.placed_epoch for r in reference.names.values()
    ]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("first", NODES)
def test_a_down_member_fails_over_as_waiting_and_placing_did(seed: int, first: str) -> None:
    fast, reference = RegistryState(), Reference()
    index = replay(seed, fast, reference)
    _same(fast, reference)
    held = fast.held_count(first)
    assert held > 0
    # Then a second member: some shapes (priorities, roles only two members have) are
    # left with no owner and wait.
    second = next(n for n in ALL if n != first and fast.held_count(n) > 0)
    for node in (first, second):
        down = MemberDown(node=node, incarnation=fast.members[node].incarnation)
        index += 1
        assert fast.apply(index, down) == reference.apply(index, down)
        _same(fast, reference)
        assert fast.held_count(node) == 0
    moved = [r for r in fast.names.values() if r.token > index - 2 and r.holder]
    assert moved, "names failed over onto owners"
    assert fast.waiting(), "some shapes have no owner left"
