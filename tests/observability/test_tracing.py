"""OpenTelemetry spans across real processes (issue 18): an SDK client with an in-memory
exporter, three nodes exporting to a JSON-lines file (``tracing = "jsonl:PATH"``).

A registration sent to a follower (through the SDK's tracing interceptor) makes one
trace: the client's CLIENT span → the follower's SERVER span → its forward (CLIENT) → the
leader's SERVER span, each the parent of the next. A bad ``tracing`` value is a config
error naming the field."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from registry.client import SyncClient
from registry.core.errors import ConfigError
from registry.node.config import NodeConfig
from registry.tracing import ClientTracing
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc
from tests.cluster.harness import LocalCluster, wait_for

REGISTER = "registry.v1.Registry/Register"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    root = tmp_path_factory.mktemp("tracing")
    spans = root / "spans.jsonl"
    c = LocalCluster(root, 3, config={"tracing": f"jsonl:{spans}"})
    try:
        c.start(timeout=30)
        yield c, spans
    finally:
        c.close()


def node_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_forwarded_registration_is_one_trace_across_three_processes(
    traced: tuple[LocalCluster, Path],
) -> None:
    c, path = traced
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def register_at_follower() -> None:
        # A raw stub on the follower (the SDK would go to the leader itself), through the
        # SDK's tracing interceptor.
        address = c.nodes[follower].grpc_addr
        interceptors = [ClientTracing(provider)]
        async with grpc.aio.insecure_channel(address, interceptors=interceptors) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            spec = pb.NameSpec(name="traced/one", kind="echo")
            await stub.Register(pb.RegisterRequest(spec=spec), timeout=10)

    asyncio.run(register_at_follower())
    ours = [s for s in exporter.get_finished_spans() if s.name == REGISTER]
    assert len(ours) == 1, [s.name for s in exporter.get_finished_spans()]
    client_span = ours[0]
    trace_id = f"{client_span.context.trace_id:032x}"

    def chain() -> list[dict[str, Any]] | None:
        spans = [s for s in node_spans(path) if s["trace_id"] == trace_id]
        return spans if len(spans) >= 3 else None

    spans = wait_for("the nodes' spans of the registration", chain, 10)
    by_parent = {s["parent_id"]: s for s in spans}
    served = by_parent[f"{client_span.context.span_id:016x}"]
    assert (served["kind"], served["service"], served["name"]) == ("SERVER", follower, REGISTER)
    assert served["attributes"]["registry.name"] == "traced/one"
    forward = by_parent[served["span_id"]]
    assert (forward["kind"], forward["service"]) == ("CLIENT", follower)
    at_leader = by_parent[forward["span_id"]]
    assert (at_leader["kind"], at_leader["service"], at_leader["name"]) == (
        "SERVER",
        leader,
        REGISTER,
    )
    assert all(s["status"] != "ERROR" for s in spans), spans


def test_a_direct_call_is_traced_by_the_worker_host(traced: tuple[LocalCluster, Path]) -> None:
    """The SDK calls a name's worker host on its own port: client CLIENT span → the
    host's SERVER span (service ``<node>/host0``) → the worker's span."""
    c, path = traced
    c.wait_ready()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seeds = [n.grpc_addr for n in c.nodes.values()]
    with SyncClient(seeds, tracer_provider=provider) as client:
        client.register("traced/echo", kind="echo")

        def host_span() -> dict[str, Any] | None:
            client.call("traced/echo", b"hi")  # goes direct once the host port is connected
            ours = {f"{s.context.span_id:016x}" for s in exporter.get_finished_spans()}
            for s in node_spans(path):
                if s["service"].endswith("/host0") and s["parent_id"] in ours:
                    return s
            return None

        served = wait_for("a call served by a worker host, traced", host_span, 15)
    assert served["kind"] == "SERVER" and served["name"] == "registry.v1.Registry/Call"
    assert served["attributes"]["registry.name"] == "traced/echo"
    worker = [s for s in node_spans(path) if s["parent_id"] == served["span_id"]]
    assert [(s["kind"], s["name"]) for s in worker] == [("INTERNAL", "worker handle_call")]


def test_untraced_requests_leave_no_client_context(traced: tuple[LocalCluster, Path]) -> None:
    """Without a tracer provider the SDK sends no trace context: the node's span for the
    request is a root (no parent)."""
    c, path = traced
    leader = c.wait_ready()
    with SyncClient(c.nodes[leader].grpc_addr, cache=False) as client:
        client.register("traced/untraced", kind="echo")

    def served() -> dict[str, Any] | None:
        for s in node_spans(path):
            if s["name"] == REGISTER and s["attributes"].get("registry.name") == "traced/untraced":
                return s
        return None

    span = wait_for("the leader's span of the untraced registration", served, 10)
    assert span["parent_id"] is None and span["service"] == leader


def test_a_bad_tracing_value_is_a_config_error() -> None:
    base = {"id": "n1", "listen": "127.0.0.1:7400", "peers": {"n1": "127.0.0.1:7400"}}
    with pytest.raises(ConfigError, match="tracing must be"):
        NodeConfig(**base, tracing="zipkin").validate()  # type: ignore[arg-type]
    NodeConfig(**base, tracing="jsonl:/tmp/x.jsonl").validate()  # type: ignore[arg-type]
