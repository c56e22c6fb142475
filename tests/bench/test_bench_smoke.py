"""``registry bench`` at a tiny size, as a real subprocess: structure and sanity, never speed.

It runs every section (real node processes, the raw gRPC echo server, a 3-member etcd)
and checks the JSON: every section ran without error, every figure is a finite number
with a unit, throughputs and latencies are > 0, p50 ≤ p99, every name was registered
(ours and etcd's), every lazy name was inactive until its first call, targets carry a
verdict, and the reference ratios are present.

etcd comes from Debian's ``etcd-server``: without ``/usr/bin/etcd`` the test skips,
unless ``CI=true`` (CI installs it through ``.ci/run``): then it fails.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.bench.params import SECTIONS
from tests.system_tools import require_tool

ETCD = Path("/usr/bin/etcd")
NAMES = 200
TIME_LIMIT_S = 90.0
STOP_GRACE_S = 30.0


@pytest.fixture
def etcd_present() -> None:
    require_tool(str(ETCD), "etcd-server")


def _pids_using(path: Path) -> list[int]:
    """Processes whose command line mentions ``path`` (the run's nodes and etcd)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture
def bench_run(tmp_path: Path, etcd_present: None) -> Iterator[tuple[dict[str, Any], str]]:
    work = tmp_path / "work"
    out = tmp_path / "bench.json"
    argv = [
        sys.executable, "-m", "registry.cli", "bench",
        "--names", str(NAMES), "--ops", "50", "--failover-runs", "1",
        "--budget", "60", "--dir", str(work), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        try:
            stdout, stderr = proc.communicate(timeout=TIME_LIMIT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # unwinds: the bench stops what it started
            stdout, stderr = proc.communicate(timeout=STOP_GRACE_S)
            pytest.fail(f"registry bench took over {TIME_LIMIT_S} s\n{stderr[-3000:]}")
        assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout}\n{stderr[-5000:]}"
        yield json.loads(out.read_text(encoding="utf-8")), stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in _pids_using(work):  # only if the bench itself failed to clean up
            os.kill(pid, signal.SIGKILL)


def test_bench_tiny_run_writes_every_figure(bench_run: tuple[dict[str, Any], str]) -> None:
    doc, table = bench_run
    assert doc["ok"] is True
    assert doc["params"]["names"] == NAMES
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["grpcio"]
    assert doc["started_at"] <= doc["finished_at"]
    sections = doc["sections"]
    assert list(sections) == list(SECTIONS)
    for name, section in sections.items():
        assert section["error"] is None, (name, section["error"])
        assert section["skipped"] is None, (name, section["skipped"])
        assert section["figures"], name
    for key, figure in doc["figures"].items():
        assert isinstance(figure["value"], float | int) and math.isfinite(figure["value"]), key
        assert figure["unit"], key
        if figure["unit"] in ("names/s", "calls/s", "s", "ms", "µs"):
            assert figure["value"] > 0, (key, figure)
        if "target" in figure:
            assert figure["verdict"] in ("pass", "miss"), key
        assert figure["label"] in table, key

    figures = doc["figures"]
    for prefix in (
        "lookups.whereis_cache",
        "lookups.whereis_rpc",
        "lookups.whereis_consistent",
        "lookups.call_c1",
        "lookups.call_c64",
        "registrations.one_by_one",
        "registrations.one_rpc_each",
        "registrations.batched_call",
        "registrations.batched_lazy_call",
    ):
        p50 = figures.get(f"{prefix}_p50_ms") or figures[f"{prefix}_p50_us"]
        p99 = figures.get(f"{prefix}_p99_ms") or figures[f"{prefix}_p99_us"]
        assert p50["value"] <= p99["value"], prefix
    fo = figures
    assert fo["failover.min_s"]["value"] <= fo["failover.median_s"]["value"]
    assert fo["failover.median_s"]["value"] <= fo["failover.max_s"]["value"]

    reg = sections["registrations"]["details"]
    counts = ("names_one_by_one", "names_batched", "names_batched_lazy", "names_one_rpc_each")
    assert [reg[k] for k in counts] == [NAMES] * len(counts)
    assert reg["names_listed"] == reg["names_before"] + 4 * NAMES
    assert sections["memory"]["details"]["names"] == NAMES
    assert len(sections["failover"]["details"]["runs"]) == 1
    rebalance = sections["rebalance"]["details"]
    assert 0 < rebalance["moved"] < NAMES
    assert rebalance["heal"]["names_on_victim"] > 0
    # The documented scale-out: the new node joins as a learner; the heal pauses a voter.
    assert rebalance["joiner_kind"].startswith("learner")
    assert rebalance["heal"]["victim"] != rebalance["joiner"]
    # The paused node's lease ran out while it was stopped: it fenced once it resumed.
    assert rebalance["heal"]["fences_of_victim"] >= 1
    assert figures["rebalance.heal_fences_elsewhere"]["value"] >= 0
    etcd = sections["etcd"]["details"]
    assert etcd["keys_counted"] == 2 * NAMES + 1
    assert etcd["api_prefix"] in ("/v3", "/v3beta")

    for name in ("memory", "registrations", "lookups", "failover", "rebalance", "durable"):
        for key in ("raft_term_changes", "fences"):  # counted from the nodes, per section
            assert figures[f"{name}.{key}"]["value"] >= 0, (name, key)
        churn = sections[name]["details"]["churn"]
        assert churn["term_after"] >= churn["term_before"] > 0, (name, churn)
    assert figures["memory.host_rss_per_idle_activation_bytes"]["unit"] == "B"

    for key in ("checkpoint_1k_c64", "activation_first_call"):
        p50, p99 = (
            figures[f"durable.{key}_p50_ms"]["value"],
            figures[f"durable.{key}_p99_ms"]["value"],
        )
        assert 0 < p50 <= p99, key
    assert figures["durable.checkpoint_1k_c64_per_s"]["value"] > 0
    durable = sections["durable"]["details"]
    assert durable["lazy_names"] == NAMES  # every lazy name was inactive until its first call
    assert durable["lazy_inactive_before_first_call"] == NAMES
    assert durable["activation_first_call"]["n"] == NAMES

    # The call target: calls beside the raw echo in alternating rounds, in one section.
    lookup_details = sections["lookups"]["details"]
    for concurrency in ("c1", "c64"):
        paired = figures[f"lookups.call_{concurrency}_vs_echo"]
        assert paired["target"]["bound"] == 0.8 and paired["verdict"] in ("pass", "miss")
        rounds = lookup_details["paired_rounds"][concurrency]
        assert len(rounds) == 5 and all(r["call_per_s"] > 0 < r["echo_per_s"] for r in rounds)
        median = sorted(r["call_per_s"] / r["echo_per_s"] for r in rounds)[2]
        assert math.isclose(paired["value"], median, rel_tol=0.01), (paired, rounds)
        # The like-for-like reference: the echo over as many processes as the names' hosts.
        spread = figures[f"lookups.call_{concurrency}_vs_echo_spread"]
        assert "target" not in spread or spread["target"] is None, spread
        assert all(r["echo_spread_per_s"] > 0 for r in rounds), rounds
        median = sorted(r["call_per_s"] / r["echo_spread_per_s"] for r in rounds)[2]
        assert math.isclose(spread["value"], median, rel_tol=0.01), (spread, rounds)

    ratios = {k: v["ratio"] for k, v in figures.items() if "ratio" in v}
    assert ratios["lookups.call_c64_per_s"]["reference"] == "grpc.echo_c64_per_s"
    assert ratios["lookups.call_c1_per_s"]["reference"] == "grpc.echo_c1_per_s"
    assert ratios["grpc.echo_spread_c1_per_s"]["reference"] == "grpc.echo_c1_per_s"
    assert ratios["lookups.call_one_name_c1_per_s"]["reference"] == "grpc.echo_c1_per_s"
    assert sections["grpc"]["details"]["spread_processes"] == 3  # one host per node
    assert ratios["registrations.batched_per_s"]["reference"] == "etcd.batched_per_s"
    assert ratios["registrations.one_by_one_per_s"]["value"] > 0
    assert ratios["registrations.one_rpc_each_per_s"]["reference"] == "etcd.one_by_one_per_s"
    assert set(doc["misses"]) <= set(figures)
