"""``registry sim raft`` through ``main([...])``: the JSON contract, exit codes, replay."""

from __future__ import annotations

import json

import pytest

import registry.sim.raft.checkers as checkers
from registry.cli import main
from registry.sim.checks import Checker
from registry.sim.raft.observations import LeaderElected, Observation


def last_json(text: str) -> dict[str, object]:
    result = json.loads(text.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "raft", "--seeds", "3", "--nodes", "3", "--duration", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    summary = last_json(out)
    assert summary["seeds"] == 3 and summary["nodes"] == 3
    assert summary["violations"] == 0 and summary["failing_seeds"] == []
    assert isinstance(summary["elections"], int) and summary["elections"] >= 3
    assert isinstance(summary["commits"], int) and summary["commits"] > 0
    assert isinstance(summary["sim_seconds"], float) and summary["sim_seconds"] >= 12.0
    assert {"wall_seconds", "speed"} <= summary.keys()
    assert "cluster-s/wall-s" in out
    assert "[3/3] violations 0" in err


def test_seed_and_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "raft", "--seed", "5", "--duration", "2", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert last_json(out)["seeds"] == 1
    assert "trace digest" in out
    assert main(["sim", "raft", "--seed", "5", "--seeds", "2", "--duration", "2", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["seeds"] == 2


class _Tripwire(Checker[Observation]):
    """Flags every election: forces the failure path without breaking Raft."""

    name = "tripwire"
    handles = (LeaderElected,)

    def feed(self, obs: Observation) -> None:
        assert isinstance(obs, LeaderElected)
        self.violation(obs.at_us, obs.node, f"elected in term {obs.term}")


def test_violations_exit_1_with_replay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = checkers.default_checkers
    monkeypatch.setattr(checkers, "default_checkers", lambda: [*defaults(), _Tripwire()])
    code = main(["sim", "raft", "--seeds", "2", "--seed", "3", "--duration", "2", "--json"])
    out, _ = capsys.readouterr()
    assert code == 1
    summary = last_json(out)
    assert summary["failing_seeds"] == [3, 4]
    assert "[tripwire] elected in term" in out
    assert "replay: registry sim raft --seed 3 --nodes 3 --duration 2" in out
    assert summary["replay"] == [
        "registry sim raft --seed 3 --nodes 3 --duration 2",
        "registry sim raft --seed 4 --nodes 3 --duration 2",
    ]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "raft", "--nodes", "2"]) == 2
    assert "nodes must be between 3 and 9" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help"]) == 0
