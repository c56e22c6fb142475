"""A real Prometheus scrapes a real 3-node cluster; the queries an operator would write
give the right answers before and after a ``kill -9``.

Debian's ``/usr/bin/prometheus`` runs as a subprocess with a generated configuration
(scrape every 0.5 s, TSDB under ``tmp_path``, listening on a free loopback port); the
test talks to it only through its HTTP API. Every PromQL query and its result is printed
(``pytest -s``) so a run documents what the dashboard would show.

Without the binary the test skips, unless ``CI=true`` (CI installs it): then it fails.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, Timeout, free_ports, wait_for
from tests.observability import dashboard
from tests.system_tools import require_tool

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_INTERVAL = "500ms"
NAMES = 30
PROM_START_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 30.0
"""Bound for a query to reach its expected value: scrapes every 0.5 s, failover ≤ 3 s
(DESIGN §5); the rest is slack for a loaded CI machine."""


def _prometheus_binary() -> str:
    return require_tool(PROMETHEUS, "prometheus")


class Prometheus:
    """A Prometheus server process and a small client for its query API."""

    def __init__(self, address: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.address = address
        self.proc = proc
        self.log_path = log_path
        self.transcript: list[tuple[str, float | None]] = []
        """Every query answered by ``wait`` or ``value``, with its final result."""

    def query(self, expr: str) -> list[dict[str, object]]:
        """The instant vector ``expr`` evaluates to now (raises on an API error)."""
        url = f"http://{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code in (400, 422):  # the query itself is wrong: no point retrying
                    raise AssertionError(f"{expr}: {exc.read().decode()}") from None
            raise
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr`` (``None`` if the vector is empty)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} gave {len(result)} series: {result}"
        value = result[0]["value"]
        assert isinstance(value, list)
        return float(value[1])

    def value(self, expr: str) -> float | None:
        """``scalar`` once, recorded in the transcript and printed."""
        got = self.scalar(expr)
        self._record(expr, got)
        return got

    def wait(self, expr: str, accept: Callable[[float | None], bool], what: str) -> float | None:
        """Poll ``expr`` until ``accept(value)``, within ``SETTLE_TIMEOUT_S``."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last: object = "no answer yet"
        while True:
            try:
                got = self.scalar(expr)
            except (OSError, urllib.error.URLError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                last = got
                if accept(got):
                    self._record(expr, got)
                    return got
            if time.monotonic() >= deadline:
                raise Timeout(
                    f"timed out after {SETTLE_TIMEOUT_S:g} s waiting for {what}: "
                    f"{expr!r} last gave {last}"
                )
            time.sleep(0.25)

    def _record(self, expr: str, got: float | None) -> None:
        self.transcript.append((expr, got))
        print(f"PromQL  {expr}  =>  {_show(got)}")


def at_least(bound: float) -> Callable[[float | None], bool]:
    return lambda value: value is not None and value >= bound


def _show(value: float | None) -> str:
    if value is None:
        return "(empty)"
    return str(int(value)) if value == int(value) else f"{value:g}"


def _config(cluster: LocalCluster) -> str:
    """Scrape configuration: one target per node, labelled with its node id."""
    static = "\n".join(
        f"      - targets: ['{node.http_addr}']\n        labels: {{node: '{node.id}'}}"
        for node in cluster.nodes.values()
    )
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: registry\n"
        f"    scrape_interval: {SCRAPE_INTERVAL}\n"
        "    scrape_timeout: 400ms\n"
        "    static_configs:\n"
        f"{static}\n"
    )


@pytest.fixture
def prom_binary() -> str:
    """The Prometheus binary, checked before any node is started."""
    return _prometheus_binary()


@pytest.fixture
def prom_cluster(tmp_path: Path, prom_binary: str) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "nodes", 3, preset="local", worker_modules=("registry.examples",))
    try:
        c.start(timeout=30.0)
        yield c
        crashed = c.crashed()
        assert not crashed, f"node process(es) exited on their own: {crashed}"
    except BaseException:
        print(c.log_tails(60))
        raise
    finally:
        c.close()


@pytest.fixture
def prom_server(
    tmp_path: Path, prom_binary: str, prom_cluster: LocalCluster
) -> Iterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    config.write_text(_config(prom_cluster), encoding="utf-8")
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                prom_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Prometheus(address, proc, log_path)
    try:
        _wait_prometheus_ready(server)
        yield server
    except BaseException:
        print(log_path.read_text(encoding="utf-8", errors="replace")[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_prometheus_ready(server: Prometheus) -> None:
    deadline = time.monotonic() + PROM_START_TIMEOUT_S
    last = "no answer"
    while True:
        code = server.proc.poll()
        if code is not None:
            log = server.log_path.read_text(encoding="utf-8", errors="replace")
            raise AssertionError(f"prometheus exited with {code}:\n{log[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://{server.address}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise Timeout(f"prometheus not ready after {PROM_START_TIMEOUT_S:g} s: {last}")
        time.sleep(0.2)


def each_runs_once(cluster: LocalCluster, names: list[str]) -> None:
    """Per name, not only in sum: every name runs on exactly one node (a duplicate plus a
    missing name would keep ``sum(registry_activations)`` right), by the nodes' /status."""

    def running() -> Counter[str]:
        return Counter(
            n
            for node in cluster.running_ids()
            for n in cluster.http_json(node, "/status")["activations"]
        )

    wanted = Counter(names)
    wait_for("each name to run on exactly one node", lambda: running() == wanted, 15)


def test_prometheus_sees_leader_quorum_names_and_failover(
    prom_cluster: LocalCluster, prom_server: Prometheus
) -> None:
    prom, cluster = prom_server, prom_cluster
    prom.wait("count(up == 1)", lambda v: v == 3, "all three nodes scraped")

    # (a) One leader, and every node holds a member lease.
    prom.wait("sum(registry_raft_is_leader)", lambda v: v == 1, "exactly one leader")
    prom.wait("count(registry_quorum == 1)", lambda v: v == 3, "every node in quorum")
    prom.wait('min(registry_members{state="up"})', lambda v: v == 3, "all up in every view")

    # (b) N names registered (one log entry): all run, once, somewhere.
    names = [f"prom/counter-{i:02d}" for i in range(NAMES)]
    cluster.stub("n1").RegisterMany(
        pb.RegisterManyRequest(specs=[pb.NameSpec(name=n, kind="counter") for n in names]),
        timeout=10,
    )
    prom.wait("max(registry_names)", lambda v: v == NAMES, "every replica sees the names")
    prom.wait("min(registry_names)", lambda v: v == NAMES, "every replica sees the names")
    prom.wait("sum(registry_activations)", lambda v: v == NAMES, "each name running once")
    each_runs_once(cluster, names)
    failovers_before = prom.value("sum(registry_failovers_total)")
    assert failovers_before == 0, "nothing failed over yet"

    # (c) kill -9 a node that runs some names and is not the leader.
    leader = next(
        node_id
        for node_id in cluster.ids
        if prom.scalar(f'registry_raft_is_leader{{node="{node_id}"}}') == 1
    )
    held = {
        node_id: int(prom.value(f'registry_activations{{node="{node_id}"}}') or 0)
        for node_id in cluster.ids
    }
    victim = max((n for n in cluster.ids if n != leader), key=lambda n: held[n])
    assert held[victim] > 0, f"no follower runs a name: {held}"
    print(f"leader {leader}; activations per node {held}; kill -9 {victim}")
    cluster.kill(victim)

    prom.wait("count(up == 1)", lambda v: v == 2, "the killed node's scrapes failing")
    prom.wait(
        "sum(registry_failovers_total)",
        at_least(held[victim]),
        f"the {held[victim]} names of {victim} failed over",
    )
    prom.wait("sum(registry_activations)", lambda v: v == NAMES, "every name running again")
    each_runs_once(cluster, names)
    prom.wait(f'registry_activations{{node="{victim}"}}', lambda v: v is None, "victim gone")
    prom.wait('max(registry_members{state="down"})', lambda v: v == 1, "the victim declared down")
    prom.wait("sum(registry_raft_is_leader)", lambda v: v == 1, "still exactly one leader")
    prom.wait("count(registry_quorum == 1)", lambda v: v == 2, "the survivors in quorum")

    # (d) The client API latency histogram was observed, by method.
    prom.wait(
        'sum(registry_rpc_seconds_count{method="RegisterMany"})',
        at_least(1),
        "RegisterMany timed",
    )
    # Register itself, twice, a scrape apart: the second makes the bucket rates non-zero,
    # so the dashboard's p99 has a value.
    register_count = 'sum(registry_rpc_seconds_count{method="Register"})'
    for i, count in enumerate((1, 2)):
        cluster.stub(leader).Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=f"prom/extra-{i}", kind="counter")),
            timeout=10,
        )
        prom.wait(register_count, at_least(count), "Register timed")
    p99 = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(registry_rpc_seconds_bucket{method="Register"}[1m])))'
    )
    prom.wait(p99, lambda v: v is not None and 0 < v < math.inf, "a p99 for Register")
    prom.wait("sum(registry_activations)", lambda v: v == NAMES + 2, "the new names running")

    # (d2) Log fsyncs are timed on every live node, and the followers time their lease
    # round trips to the leader (labelled with its id).
    prom.wait("count(registry_fsync_seconds_count > 0)", lambda v: v == 2, "fsyncs timed")
    prom.wait(
        f'sum(registry_peer_rtt_seconds_count{{peer="{leader}"}})',
        at_least(1),
        "lease round trips to the leader timed",
    )
    # Exported from the start on every node (0 unless an election happened meanwhile).
    prom.wait("count(registry_leader_changes_total)", lambda v: v == 2, "leader changes")

    # (d3) Calls by worker kind, counted in the hosts: twice, a scrape apart, so the
    # dashboard's rate has two points.
    ok_calls = 'sum(registry_calls_total{kind="counter",result="ok"})'
    for count in (1, 2):
        reply = cluster.stub(leader).Call(
            pb.CallRequest(name=names[0], payload=b"incr"), timeout=10
        )
        assert int(reply.payload) == count
        prom.wait(ok_calls, at_least(count), "calls counted by kind")
    prom.wait('sum(registry_call_seconds_count{kind="counter"})', at_least(2), "calls timed")

    # (e) Every query of the Grafana dashboard parses and, but for the error counter (no
    # call failed here), finds series in this real Prometheus.
    empty_allowed = {"registry_rpc_errors_total"}
    for target in dashboard.targets(dashboard.load()):
        expr = dashboard.substituted(target.expr)
        series = prom.query(expr)  # raises on a PromQL error
        print(f"dashboard {target.panel!r} {target.ref}: {len(series)} series")
        if not dashboard.metric_names(target.expr) <= empty_allowed:
            assert series, f"dashboard panel {target.panel!r} ({target.ref}): {expr} is empty"

    print("\n---- PromQL transcript ----")
    for expr, got in prom.transcript:
        print(f"{expr}  =>  {_show(got)}")
