"""DNS peer discovery with real node processes and a real (tiny) DNS server on 127.0.0.1.

The server plays a Kubernetes headless Service: SRV ``_grpc._tcp.registry.test.`` lists
``nN.registry.test.`` with each node's gRPC port, and A records map those names to
127.0.0.1. Nodes get no ``--peers``; they find each other through it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.dns_server import TinyDns, tiny_dns
from tests.cluster.harness import (
    PACKAGE_ROOT,
    RPC_TIMEOUT_S,
    LocalCluster,
    call_until,
    free_ports,
    wait_for,
)

SRV = "_grpc._tcp.registry.test."
FAIL_FAST_S = 30.0
"""A node that cannot be among the voters must exit well within this (its discovery
timeout is twice as long)."""


def srv_targets(c: LocalCluster, ids: list[str]) -> list[tuple[str, int]]:
    return [(f"{n}.registry.test", int(c.nodes[n].grpc_addr.rpartition(":")[2])) for n in ids]


def dns_args(dns: TinyDns, *extra: str) -> tuple[str, ...]:
    return ("--discovery", "dns", "--dns-name", SRV, "--dns-server", dns.address, *extra)


@pytest.fixture
def dns() -> Iterator[TinyDns]:
    with tiny_dns() as server:
        for n in ("n1", "n2", "n3"):
            server.set_a(f"{n}.registry.test", "127.0.0.1")
        yield server


@pytest.fixture
def cluster(tmp_path: Path, dns: TinyDns) -> Iterator[LocalCluster]:
    """Three nodes configured for DNS discovery, not started; always stopped after."""
    c = LocalCluster(
        tmp_path,
        3,
        preset="local",
        peer_args=dns_args(dns, "--expect", "3", "--discovery-timeout", "60"),
    )
    try:
        yield c
    finally:
        crashed = c.crashed()
        c.close()
        assert not crashed, f"node process(es) exited on their own: {crashed}"


def log_text(c: LocalCluster, node_id: str) -> str:
    return c.nodes[node_id].log_path.read_text(encoding="utf-8", errors="replace")


def logged(c: LocalCluster, node_id: str, text: str) -> Callable[[], bool]:
    return lambda: text in log_text(c, node_id)


def test_three_nodes_find_each_other_through_srv_records(
    cluster: LocalCluster, dns: TinyDns
) -> None:
    # Only n1 and n2 are "scheduled" at first: they must wait for the third voter,
    # saying so, without bootstrapping anything.
    dns.set_srv(SRV, srv_targets(cluster, ["n1", "n2"]))
    cluster.start_node("n1")
    cluster.start_node("n2")
    waiting = f"dns discovery: found 2 of 3 peers under {SRV}"
    for n in ("n1", "n2"):
        wait_for(
            f"{n} to log that it waits for a third voter",
            logged(cluster, n, waiting),
            timeout=15,
        )
    assert not cluster.crashed()
    with pytest.raises(grpc.RpcError):
        cluster.status("n1", timeout=0.5)  # not serving yet: it is still discovering

    dns.set_srv(SRV, srv_targets(cluster, ["n1", "n2", "n3"]))
    cluster.start_node("n3")
    leader = cluster.wait_ready(timeout=40)

    assert leader in cluster.ids
    for n in cluster.ids:
        status = cluster.status(n)
        assert status.leader == leader
        members = {m.id: (m.up, m.voter, m.address) for m in status.members}
        assert members == {
            m: (True, True, cluster.nodes[m].grpc_addr) for m in ("n1", "n2", "n3")
        }, f"{n} sees {members}"
        voters = ", ".join(f"{m}={cluster.nodes[m].grpc_addr}" for m in ("n1", "n2", "n3"))
        assert f"dns discovery: bootstrap voters {voters} (this node is {n})" in log_text(
            cluster, n
        )
    assert dns.srv_queries(SRV) >= 3

    cluster.stub("n2").Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="dns/echo", kind="echo")),
        timeout=RPC_TIMEOUT_S * 2,
    )
    for n in cluster.ids:
        payload = f"via {n}".encode()
        assert call_until(cluster, n, "dns/echo", payload, timeout=15).payload == payload


def run_node(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    (grpc_port,) = free_ports(1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "registry.cli", "node", "--listen", f"127.0.0.1:{grpc_port}"]
    argv += ["--data-dir", str(tmp_path / "data"), "--preset", "local", *args]
    # subprocess.run kills the child if the timeout runs out: nothing outlives the test.
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_node_missing_from_the_srv_answer_exits_with_a_clear_error(
    tmp_path: Path, dns: TinyDns
) -> None:
    ports = free_ports(3)
    dns.set_srv(SRV, [(f"n{i}.registry.test", p) for i, p in enumerate(ports, start=1)])
    result = run_node(
        tmp_path,
        "--id",
        "n4",
        *dns_args(dns, "--expect", "3", "--discovery-timeout", str(2 * FAIL_FAST_S)),
        timeout=FAIL_FAST_S,
    )
    assert result.returncode == 2, result
    voters = ", ".join(f"n{i}=127.0.0.1:{p}" for i, p in enumerate(ports, start=1))
    assert (
        f"error: dns discovery: this node's id 'n4' is not among the voters {SRV} lists ({voters})"
    ) in result.stderr
    assert "node n4 up" not in result.stderr, "it must not have started serving"


def test_a_node_that_never_sees_enough_voters_gives_up(tmp_path: Path, dns: TinyDns) -> None:
    ports = free_ports(2)
    dns.set_srv(SRV, [(f"n{i}.registry.test", p) for i, p in enumerate(ports, start=1)])
    result = run_node(
        tmp_path,
        "--id",
        "n1",
        *dns_args(dns, "--expect", "3", "--discovery-timeout", "4"),
        timeout=FAIL_FAST_S,
    )
    assert result.returncode == 2, result
    assert f"dns discovery: found 2 of 3 peers under {SRV}: n1=" in result.stderr, "progress"
    assert f"error: dns discovery: found 2 of 3 peers under {SRV} within 4 s" in result.stderr
