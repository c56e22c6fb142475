"""Timing: presets, the derived down_after, safe rounding to ticks, and validation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from registry.core.errors import ConfigError
from registry.core.timing import PRESETS, Timing, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_convert(name: str) -> None:
    timing = preset(name)
    assert timing == PRESETS[name]
    assert timing.validate() is timing
    raft = timing.raft("n1")
    member = timing.membership()
    assert raft.node_id == "n1"
    assert raft.heartbeat_tick < raft.election_tick
    assert raft.lease_ticks() >= 1
    assert 1 <= member.heartbeat_tick < member.lease_tick < member.down_after_tick
    assert member.fence_grace_tick >= 1 and member.retry_tick >= 1
    # The failover safety rule holds after rounding, in seconds:
    assert (member.down_after_tick - 1) * timing.tick >= timing.min_down_after() - 1e-9


def test_presets_are_ordered_from_fast_to_slow() -> None:
    local, lan, wan = (preset(n).effective_down_after() for n in ("local", "lan", "wan"))
    assert local < lan < wan


def test_lan_is_the_default_and_derives_down_after() -> None:
    lan = preset("lan")
    assert lan == Timing()
    expected = (1.0 + 0.5) * 1.05 / 0.95 + 0.2
    assert lan.down_after is None
    assert lan.min_down_after() == pytest.approx(expected)
    assert lan.effective_down_after() == pytest.approx(expected)
    assert round(expected, 2) == 1.86


def test_lan_ticks() -> None:
    lan = Timing()
    member = lan.membership()
    assert member.heartbeat_tick == 4  # 0.2 s / 0.05 s
    assert member.lease_tick == 20  # 1.0 s
    assert member.down_after_tick == math.ceil(1.8579 / 0.05) + 1 == 39
    assert member.fence_grace_tick == 10
    assert member.handoff_deadline_tick == 40
    assert member.retry_tick == 8  # the election timeout
    raft = lan.raft("n1")
    assert (raft.heartbeat_tick, raft.election_tick) == (2, 8)  # 100 ms / 400–800 ms
    assert raft.max_drift == lan.max_drift


def test_an_explicit_down_after_is_kept_when_long_enough() -> None:
    timing = Timing(down_after=3.0).validate()
    assert timing.effective_down_after() == 3.0
    assert timing.membership().down_after_tick == 61


def test_rounding_is_safe_lease_down_and_down_after_up() -> None:
    timing = Timing(tick=0.03, member_heartbeat=0.1, raft_heartbeat=0.1, lease=1.0).validate()
    member = timing.membership()
    # lease 1.0 / 0.03 = 33.3 ticks: rounding down never promises more than a second.
    assert member.lease_tick == 33
    assert member.lease_tick * timing.tick <= timing.lease
    # down_after rounds up, and one more tick: a tick count bounds time within a tick.
    exact = timing.effective_down_after() / timing.tick
    assert member.down_after_tick == math.ceil(exact) + 1
    assert (member.down_after_tick - 1) * timing.tick >= timing.effective_down_after()
    # The fence grace is how long a fenced member may still run: it rounds down too.
    assert member.fence_grace_tick == 16  # 0.5 / 0.03 = 16.7
    assert member.fence_grace_tick * timing.tick <= timing.fence_grace
    # The heartbeat rounds down (more often is safe), the handoff deadline up.
    assert member.heartbeat_tick == 3
    assert member.handoff_deadline_tick == math.ceil(2.0 / 0.03)


def test_exact_multiples_are_not_pushed_over_by_float_error() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in floating point.
    timing = Timing(
        tick=0.1, raft_heartbeat=0.3, election_timeout=1.5, member_heartbeat=0.3, lease=1.2
    )
    member = timing.validate().membership()
    assert member.heartbeat_tick == 3
    assert member.lease_tick == 12
    assert timing.raft("n1").heartbeat_tick == 3


def test_raft_extra_fields_pass_through() -> None:
    raft = Timing().raft("n2", voters=frozenset({"n1", "n2", "n3"}), snapshot_threshold=5)
    assert raft.voters == frozenset({"n1", "n2", "n3"})
    assert raft.snapshot_threshold == 5


def test_preset_overrides_are_validated() -> None:
    assert preset("lan", lease=2.0).lease == 2.0
    with pytest.raises(ConfigError, match="member_heartbeat"):
        preset("lan", member_heartbeat=2.0)


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        preset("moon")
    assert "'moon'" in str(err.value)
    assert "lan" in str(err.value) and "local" in str(err.value) and "wan" in str(err.value)


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="leese"):
        preset("lan", leese=1.0)


CONTRADICTIONS = [
    (
        {"down_after": 1.0},
        ["down_after (1.0 s) must be ≥", "(lease + fence_grace)", "1.858"],
    ),
    ({"member_heartbeat": 1.0}, ["member_heartbeat (1.0 s) must be shorter than lease"]),
    ({"member_heartbeat": 1.5}, ["member_heartbeat (1.5 s) must be shorter than lease"]),
    ({"raft_heartbeat": 0.5}, ["raft_heartbeat (0.5 s) must be shorter than election_timeout"]),
    ({"tick": 0.15}, ["tick (0.15 s) must not exceed the heartbeats"]),
    ({"tick": -0.05}, ["tick must be > 0 s (got -0.05)"]),
    ({"lease": 0.0}, ["lease must be > 0 s"]),
    ({"fence_grace": -1.0}, ["fence_grace must be > 0 s"]),
    ({"handoff_deadline": -2.0}, ["handoff_deadline must be > 0 s"]),
    ({"election_timeout": -1.0}, ["election_timeout must be > 0 s"]),
    ({"margin": -0.1}, ["margin must be ≥ 0 s (got -0.1)"]),
    ({"max_drift": -0.01}, ["max_drift must be in [0, 0.5)"]),
    ({"max_drift": 0.5}, ["max_drift must be in [0, 0.5)"]),
    ({"down_after": -1.0}, ["down_after (-1.0 s) must be ≥"]),
]


@pytest.mark.parametrize(("change", "expected"), CONTRADICTIONS, ids=lambda v: str(v))
def test_each_contradiction_is_named(change: dict[str, float], expected: list[str]) -> None:
    timing = replace(Timing(), **change)
    with pytest.raises(ConfigError) as err:
        timing.validate()
    message = str(err.value)
    assert message.startswith("invalid timing: ")
    for fragment in expected:
        assert fragment in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Timing(tick=0.0, lease=-1.0, margin=-1.0).validate()
    message = str(err.value)
    assert "tick must be > 0" in message
    assert "lease must be > 0" in message
    assert "margin must be ≥ 0" in message


def test_down_after_exactly_at_the_minimum_is_accepted() -> None:
    minimum = Timing().min_down_after()
    assert Timing(down_after=minimum).validate().effective_down_after() == minimum


def test_drift_makes_down_after_longer() -> None:
    no_drift = Timing(max_drift=0.0)
    assert no_drift.min_down_after() == pytest.approx(1.5 + 0.2)
    assert Timing(max_drift=0.2).min_down_after() == pytest.approx(1.5 * 1.2 / 0.8 + 0.2)


def test_a_tick_too_coarse_for_a_raft_lease_is_refused_by_the_raft_config() -> None:
    coarse = Timing(tick=0.1, raft_heartbeat=0.1, election_timeout=0.2, member_heartbeat=0.1)
    coarse.validate()  # the timing alone is consistent …
    with pytest.raises(ConfigError, match="too short for a leader lease"):
        coarse.raft("n1")  # … but two election ticks leave no room for a leader lease
