"""The generic world, network, clocks and nemesis — with a toy application, not Raft."""

from __future__ import annotations

import random

import pytest

from registry.sim.engine.clock import ClockConfig, NodeClock
from registry.sim.engine.nemesis import Nemesis
from registry.sim.engine.network import NetworkConfig
from registry.sim.engine.world import World

QUIET = NetworkConfig(loss=0.0, duplicate=0.0, slow_fraction=0.0)


class Echo:
    """Toy process: records what happens to it."""

    def __init__(self, world: World[str], node_id: str) -> None:
        self.world = world
        self.id = node_id
        self.ticks = 0
        self.got: list[tuple[int, str, str]] = []
        self.boots = 0
        self.resumed: list[int] = []

    def on_start(self, rng: random.Random) -> None:
        self.boots += 1

    def on_tick(self) -> None:
        self.ticks += 1

    def on_message(self, src: str, msg: str) -> None:
        self.got.append((self.world.now_us, src, msg))

    def on_crash(self) -> None:
        self.ticks = 0

    def on_resume(self, missed_ticks: int) -> None:
        self.resumed.append(missed_ticks)
        self.ticks += missed_ticks


def make(n: int = 3, network: NetworkConfig = QUIET) -> tuple[World[str], dict[str, Echo]]:
    world: World[str] = World(rng=random.Random(1), network=network)
    procs = {f"n{i}": Echo(world, f"n{i}") for i in range(1, n + 1)}
    for node_id, proc in procs.items():
        world.add(node_id, proc)
    return world, procs


def test_clock_rates_stay_within_drift() -> None:
    config = ClockConfig(tick_us=50_000, max_drift=0.05)
    rng = random.Random(3)
    clocks = [NodeClock.draw(rng, config, 0) for _ in range(500)]
    assert all(47_500 <= c.period_us <= 52_500 for c in clocks)
    assert {47_500, 52_500} <= {c.period_us for c in clocks}  # the extremes are exercised
    assert clocks[0].local_us(round(1_000_000 * clocks[0].rate)) == 1_000_000


def test_ticks_follow_each_nodes_clock() -> None:
    world, procs = make()
    world.run_until(10_000_000)
    for node_id, proc in procs.items():
        expected = 10_000_000 // world.clock(node_id).period_us
        assert abs(proc.ticks - expected) <= 1


def test_messages_arrive_after_a_delay() -> None:
    world, procs = make()
    world.send("n1", "n2", "hello")
    world.run_until(100_000)
    [(at, src, msg)] = procs["n2"].got
    assert (src, msg) == ("n1", "hello") and 500 <= at <= 5_000


def test_split_and_heal() -> None:
    world, procs = make()
    world.network.split([["n1"], ["n2", "n3"]])
    for dst in ("n2", "n3"):
        world.send("n1", dst, "x")
        world.send(dst, "n1", "y")
    world.send("n2", "n3", "z")
    world.run_until(100_000)
    assert procs["n1"].got == [] and procs["n2"].got == [] and len(procs["n3"].got) == 1
    world.network.heal()
    world.send("n1", "n2", "after")
    world.run_until(200_000)
    assert [m for _, _, m in procs["n2"].got] == ["after"]


def test_bridge_is_not_transitive_and_one_way_is_one_way() -> None:
    world, procs = make(4)
    world.network.bridge(["n1"], "n2", ["n3", "n4"])
    pairs = [("n1", "n2"), ("n2", "n3"), ("n1", "n3"), ("n4", "n1"), ("n3", "n4")]
    for src, dst in pairs:
        world.send(src, dst, f"{src}>{dst}")
    world.run_until(100_000)
    seen = {m for p in procs.values() for _, _, m in p.got}
    assert seen == {"n1>n2", "n2>n3", "n3>n4"}
    world.network.heal()
    world.network.one_way("n1", "n2")
    world.send("n1", "n2", "blocked")
    world.send("n2", "n1", "open")
    world.run_until(200_000)
    assert [m for _, _, m in procs["n1"].got] == ["open"]


def test_cut_while_in_flight_drops() -> None:
    world, procs = make()
    world.send("n1", "n2", "late")
    world.network.one_way("n1", "n2")
    world.run_until(100_000)
    assert procs["n2"].got == []


def test_crash_drops_in_flight_messages_and_stops_ticks() -> None:
    world, procs = make()
    world.send("n1", "n2", "lost")
    world.crash("n2")
    world.run_until(1_000_000)
    assert procs["n2"].got == [] and procs["n2"].ticks == 0
    assert world.up_nodes() == ["n1", "n3"] and world.down_nodes() == ["n2"]
    world.restart("n2")
    world.send("n1", "n2", "fresh")
    world.run_until(2_000_000)
    assert [m for _, _, m in procs["n2"].got] == ["fresh"]
    assert procs["n2"].boots == 2 and procs["n2"].ticks > 0


def test_pause_buffers_messages_and_reports_missed_ticks() -> None:
    world, procs = make()
    world.run_until(100_000)
    before = procs["n2"].ticks
    world.pause("n2", 1_000_000)
    world.send("n1", "n2", "buffered")
    world.run_until(1_099_999)
    assert procs["n2"].got == [] and procs["n2"].ticks == before and world.is_paused("n2")
    world.run_until(1_200_000)
    [(at, _, _)] = procs["n2"].got
    assert at == 1_100_000 and not world.is_paused("n2")
    assert procs["n2"].resumed and procs["n2"].resumed[0] >= 18


def test_loss_and_duplication() -> None:
    world, procs = make(2, NetworkConfig(loss=0.5, duplicate=0.5, slow_fraction=0.5))
    for i in range(2_000):
        world.send("n1", "n2", str(i))
    world.run_until(1_000_000)
    stats = world.network.stats
    assert 800 < stats.lost < 1_200 and 300 < stats.duplicated < 700
    assert stats.delivered == len(procs["n2"].got) == 2_000 - stats.lost + stats.duplicated
    order = [int(m) for _, _, m in procs["n2"].got]
    assert order != sorted(order)  # the slow path reorders


def test_cannot_schedule_in_the_past() -> None:
    world, _ = make()
    world.run_until(1_000)
    with pytest.raises(ValueError, match="past"):
        world.at(10, lambda: None)


def test_nemesis_is_deterministic_and_calm_restores_everything() -> None:
    timelines = []
    for _ in range(2):
        world, _ = make(5)
        nemesis = Nemesis(world, random.Random(42))
        nemesis.start(until_us=60_000_000)
        world.run_until(60_000_000)
        nemesis.calm()
        assert world.down_nodes() == [] and world.network.blocked_links() == []
        assert world.network.loss == world.network.config.loss
        timelines.append(nemesis.timeline)
    assert timelines[0] == timelines[1]
    assert len(timelines[0]) > 20
