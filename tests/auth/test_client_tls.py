"""Client TLS (issue 16): a node with ``client_cert``/``client_key`` speaks only TLS on
its client port. The SDK and the CLI connect with the CA; without it (plaintext, or a
CA that did not sign the node's certificate) the client gets a clear error. Nodes
forward writes and calls to each other's client port over TLS too (verified by node id
against the cluster CA)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from registry.client import SyncClient, Tls, Unavailable
from registry.node.certs import init_ca
from tests.cluster.harness import LocalCluster


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("tls"), 3, client_tls=True)
    try:
        cluster.start(timeout=30)
        yield cluster
    finally:
        cluster.close()


def addresses(c: LocalCluster) -> list[str]:
    return [n.grpc_addr for n in c.nodes.values()]


def test_sdk_connects_with_the_ca_and_nodes_forward_over_tls(c: LocalCluster) -> None:
    assert c.client_tls is not None
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    tls = Tls(ca=c.client_tls.ca)
    # Seeded with a follower only: the write is forwarded to the leader over TLS.
    with SyncClient(c.nodes[follower].grpc_addr, tls=tls, cache=False) as client:
        client.register("tls/echo", kind="echo")
        assert client.call("tls/echo", b"hi") == b"hi"
    with SyncClient(addresses(c), tls=tls) as client:
        assert client.whereis("tls/echo") is not None


def test_without_the_ca_the_sdk_fails_clearly(c: LocalCluster) -> None:
    with pytest.raises(Unavailable) as plain, SyncClient(addresses(c), timeout=3) as client:
        client.cluster()
    assert "connect with tls=Tls(ca=...)" in str(plain.value), plain.value
    other_ca = init_ca(c.root / "other-ca")
    with (
        pytest.raises(Unavailable) as untrusted,
        SyncClient(addresses(c), timeout=3, tls=Tls(ca=other_ca)) as client,
    ):
        client.cluster()
    assert "TLS handshake failed" in str(untrusted.value), untrusted.value


def test_cli_takes_ca(c: LocalCluster) -> None:
    assert c.client_tls is not None
    addr = c.nodes[c.ids[0]].grpc_addr
    cli = [sys.executable, "-m", "registry.cli", "status", "--addr", addr, "--timeout", "5"]
    ok = subprocess.run([*cli, "--ca", str(c.client_tls.ca)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "leader" in ok.stdout.lower()
    plain = subprocess.run(cli, capture_output=True, text=True)
    assert plain.returncode == 1
    assert "UNAVAILABLE" in plain.stderr
