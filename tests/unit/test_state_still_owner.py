"""``RegistryState.still_owner``: after changes of the candidates that only took members
out (down, draining), a holder that is still a candidate is still its name's owner, so
a replica need not hash the name again to know no handoff is due. Any other change
(a member up again, new kinds or roles) must make it ask placement.

Random walks over members going down, coming back, draining and changing kinds and
roles, with names of several shapes (kinds, roles, priority tiers): after every step,
each record ``still_owner`` vouches for has ``owner == holder``, and the shortcut is
taken for most held names after a member goes down (or it would save nothing)."""

from __future__ import annotations

import random

import pytest

from registry.core.command_types import MemberDown, MemberUp, NameSpec, Register
from registry.core.commands import Command
from registry.core.state import RegistryState

NODES = ("n1", "n2", "n3", "n4", "n5")
KINDS = (("echo", "counter"), ("echo",), ())


def _up(node: str, incarnation: int, rng: random.Random, draining: bool = False) -> MemberUp:
    roles = rng.choice(((), ("web",), ("web", "batch")))
    return MemberUp(
        node=node,
        incarnation=incarnation,
        address=f"{node}:1",
        roles=roles,
        kinds=rng.choice(KINDS),
        draining=draining,
    )


def _spec(i: int, rng: random.Random) -> NameSpec:
    shape = rng.randrange(4)
    name = f"x/{i}"
    if shape == 0:
        return NameSpec(name=name, kind="echo")
    if shape == 1:
        return NameSpec(name=name, kind="counter")
    if shape == 2:
        return NameSpec(name=name, kind="echo", roles=("web",))
    tiers = (tuple(rng.sample(NODES, 2)), tuple(rng.sample(NODES, 2)))
    return NameSpec(name=name, kind="echo", priority=tiers)


class _Walk:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = RegistryState()
        self.index = 0
        self.incarnation = dict.fromkeys(NODES, 0)

    def apply(self, command: Command) -> None:
        self.index += 1
        self.state.apply(self.index, command)

    def member_up(
        self, node: str, *, same: bool = False, draining: bool = False, bump: bool = True
    ) -> None:
        """``same``: the member's roles and kinds as they are; ``bump``: a new
        incarnation (without it, the same process changes its draining flag: it keeps
        its names until they are handed off)."""
        self.incarnation[node] += 1 if bump else 0
        up = _up(node, self.incarnation[node], self.rng, draining)
        old = self.state.members.get(node)
        if same and old is not None:
            up = MemberUp(
                node=node,
                incarnation=self.incarnation[node],
                address=old.address,
                roles=tuple(sorted(old.roles)),
                kinds=tuple(sorted(old.kinds)),
                draining=draining,
            )
        self.apply(up)

    def vouched(self) -> tuple[int, int]:
        """Check every vouched-for record; (vouched, held) counts."""
        vouched = held = 0
        for record in self.state.names.values():
            if not record.holder:
                continue
            held += 1
            if self.state.still_owner(record):
                vouched += 1
                owner = self.state.owner(record.spec.name)
                assert owner == record.holder, (
                    f"{record.spec.name}: still_owner vouched for {record.holder}, "
                    f"placement says {owner} (stable since "
                    f"{self.state.placement_stable_since}, placed {record.placed_epoch})"
                )
        return vouched, held


@pytest.mark.parametrize("seed", range(12))
def test_still_owner_never_vouches_for_a_holder_that_is_not_the_owner(seed: int) -> None:
    walk = _Walk(seed)
    for node in NODES:
        walk.member_up(node)
    rng = walk.rng
    specs = [_spec(i, rng) for i in range(3000)]
    for start in range(0, len(specs), 500):
        walk.apply(Register(specs=tuple(specs[start : start + 500])))
    walk.vouched()
    for _ in range(40):
        node = rng.choice(NODES)
        member = walk.state.members[node]
        step = rng.randrange(5)
        if step == 0 and member.up:
            walk.apply(MemberDown(node=node, incarnation=member.incarnation))
        elif step == 1:
            walk.member_up(node, same=True)  # back (or re-fenced) as it was
        elif step == 2:
            walk.member_up(node)  # back with other roles and kinds
        elif step == 3:
            walk.member_up(node, same=True, draining=True, bump=False)
        else:
            walk.member_up(node, same=True, draining=False, bump=False)
        walk.vouched()


def test_after_a_member_goes_down_the_survivors_holders_are_vouched_for() -> None:
    """The shortcut must pay: one member down leaves every surviving holder vouched for
    (names placed before the change included), so no replica rescans them."""
    walk = _Walk(99)
    for node in NODES:
        walk.member_up(node, same=False)
    specs = [NameSpec(name=f"x/{i}", kind="echo") for i in range(4000)]
    for start in range(0, len(specs), 1000):
        walk.apply(Register(specs=tuple(specs[start : start + 1000])))
    walk.apply(MemberDown(node="n5", incarnation=walk.incarnation["n5"]))
    vouched, held = walk.vouched()
    assert held == len(specs)
    assert vouched == held, f"only {vouched} of {held} holders vouched for after a down"
    # A member coming back changes placement: nothing placed before is vouched for.
    walk.member_up("n5", same=True)
    walk.vouched()
    earlier = [r for r in walk.state.names.values() if r.placed_epoch < walk.index]
    assert earlier and not any(walk.state.still_owner(r) for r in earlier)
