"""The Grafana dashboard only plots metrics a real node exports, and the node's metrics
keep the cardinality rule (no name or worker as a label).

One real node process (``LocalCluster`` of size 1) registers a name, answers a call and
refuses a duplicate registration, so that counters and histograms with labels have
series; its ``/metrics`` is parsed with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, call_until, rpc_error, wait_for
from tests.observability import dashboard

FORBIDDEN_LABELS = {"name", "worker"}
"""Per-name labels would make a series per registered name (unbounded cardinality)."""


@pytest.fixture(scope="module")
def prom_one_node_families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Metric]]:
    c = LocalCluster(tmp_path_factory.mktemp("one-node"), 1, worker_modules=("registry.examples",))
    try:
        c.start(timeout=30.0)
        stub = c.stub("n1")
        spec = pb.NameSpec(name="dash/counter", kind="counter")
        stub.Register(pb.RegisterRequest(spec=spec), timeout=10)
        assert call_until(c, "n1", "dash/counter", b"incr", timeout=10).payload == b"1"
        duplicate = rpc_error(lambda: stub.Register(pb.RegisterRequest(spec=spec), timeout=10))
        assert duplicate.code() is grpc.StatusCode.ALREADY_EXISTS

        def scraped() -> bytes | None:
            # The host reports its calls by kind once a second: wait for that report.
            code, ctype, body = c.http_get("n1", "/metrics")
            assert code == 200 and ctype.startswith("text/plain"), (code, ctype)
            return body if b'registry_calls_total{kind="counter",result="ok"}' in body else None

        body = wait_for("the host's call report in /metrics", scraped, 10)
        yield list(text_string_to_metric_families(body.decode()))
        assert not c.crashed(), c.log_tails(60)
    finally:
        c.close()


def _sample_names(families: list[Metric]) -> set[str]:
    return {sample.name for family in families for sample in family.samples}


def test_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource() -> None:
    board = dashboard.load()
    assert board["uid"] and board["title"]
    assert board["schemaVersion"] >= 36, "Grafana 10+ dashboards use schemaVersion ≥ 36"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard.panels(board)
    ids = [p["id"] for p in board["panels"]] + [
        p["id"] for row in board["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert len(panels) >= 12
    for panel in panels:
        title = panel.get("title")
        assert title, f"a panel without a title: {panel.get('id')}"
        assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, title
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, title
        assert panel.get("targets"), f"{title}: no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{title} {target.get('refId')}: empty expr"
            assert target.get("datasource") == panel["datasource"], title
            assert target.get("refId"), title
    for target in dashboard.targets(board):
        assert dashboard.metric_names(target.expr), f"{target.panel}: no metric in {target.expr}"
        dashboard.substituted(target.expr)  # only variables Grafana knows


def test_every_metric_on_the_dashboard_is_exported(
    prom_one_node_families: list[Metric],
) -> None:
    families = prom_one_node_families
    histograms = {f.name for f in families if f.type == "histogram"}
    exported = _sample_names(families)
    missing: list[str] = []
    used: set[str] = set()
    for target in dashboard.targets(dashboard.load()):
        for series in dashboard.metric_names(target.expr):
            family = dashboard.family_of(series, histograms)
            used.add(family)
            if series.endswith("_bucket"):
                # Quantiles only make sense over a histogram's buckets.
                assert family in histograms, f"{target.panel}: {series} is not a histogram"
            if series not in exported:
                missing.append(f"{target.panel} ({target.ref}): {series}")
    # A one-node cluster has no peer to measure a lease round trip to; the 3-node
    # Prometheus test (test_prometheus.py) runs that panel's query and finds series.
    missing = [m for m in missing if "registry_peer_rtt_seconds" not in m]
    assert not missing, "dashboard queries metrics the node does not export:\n" + "\n".join(missing)
    # Every registry_* family a node exports is on the dashboard, save the one kept for
    # alerting rather than plotting.
    registry_families = {
        dashboard.family_of(name, histograms)
        for name in exported
        if name.startswith("registry_") and not name.endswith("_created")
    }
    assert registry_families - used <= {"registry_names_waiting"}, (
        f"exported but not on the dashboard: {sorted(registry_families - used)}"
    )


def test_registry_metrics_have_bounded_labels(prom_one_node_families: list[Metric]) -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Registry"].methods}
    for family in prom_one_node_families:
        if not family.name.startswith("registry_"):
            continue
        for sample in family.samples:
            labels: dict[str, Any] = sample.labels
            bad = FORBIDDEN_LABELS & set(labels)
            assert not bad, f"{sample.name} has per-name label(s) {bad}"
            if "method" in labels:
                assert labels["method"] in methods, f"{sample.name}: method {labels['method']}"


def test_rpc_metrics_were_observed(prom_one_node_families: list[Metric]) -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in prom_one_node_families
        for s in family.samples
    }
    assert samples[("registry_rpc_seconds_count", (("method", "Register"),))] == 2
    assert samples[("registry_rpc_seconds_count", (("method", "Call"),))] >= 1
    errors = ("registry_rpc_errors_total", (("code", "ALREADY_EXISTS"), ("method", "Register")))
    assert samples[errors] == 1
    assert samples[("registry_activations", ())] == 1
    assert samples[("registry_names", ())] == 1
