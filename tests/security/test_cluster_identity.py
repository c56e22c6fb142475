"""Cluster identity (G8): a node of one cluster pointed at another is refused on both
sides, with certificates from one shared CA (so TLS alone would let it in); a data
directory keeps its cluster id; a non-loopback peer port needs TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.cli import build_parser
from registry.cli.node import node_config
from registry.core.errors import ConfigError
from registry.node.config import NodeConfig
from registry.testing.local_cluster import LocalCluster, cluster, free_ports, wait_for
from registry.v1 import registry_pb2 as pb
from tests.security.peer_client import refused


def whole(c: LocalCluster, among: list[str]) -> dict[str, object]:
    statuses = {n: c.status(n) for n in among}
    return {
        "terms": {n: s.term for n, s in statuses.items()},
        "members": {
            n: sorted((m.id, m.incarnation) for m in s.members) for n, s in statuses.items()
        },
    }


def test_a_node_pointed_at_another_cluster_is_refused_and_both_stay_healthy(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca"
    with cluster(tmp_path / "a", 3, certs=ca) as a, cluster(tmp_path / "b", 3, certs=ca) as b:
        assert a.cluster_id != b.cluster_id
        before = whole(a, a.ids)
        # b's n2 comes back believing it is a's n2: a's peer list, its own addresses.
        b.terminate("n2")
        b.peer_args = (
            "--peers",
            ",".join(
                f"{n}={b.nodes[n].grpc_addr}/{b.peer_addr[n]}"
                if n == "n2"
                else f"{n}={a.nodes[n].grpc_addr}/{a.peer_addr[n]}"
                for n in a.ids
            ),
            "--peer-listen",
            b.peer_addr["n2"],
        )
        b.restart("n2")
        # b's n2 still follows b's leader (b keeps its old address), and sends its member
        # heartbeats to "n3" — a's n3 now: refused there, and seen refused by b's n2.
        wait_for(
            "a to refuse b's n2, and b's n2 to see it refused",
            lambda: (
                sum(refused(a, n).get("cluster_mismatch", 0) for n in a.ids) >= 1
                and refused(b, "n2").get("cluster_mismatch", 0) >= 1
            ),
            20,
        )
        logs = {n: a.nodes[n].log_path.read_text() for n in a.ids}
        refusing = [n for n, text in logs.items() if "cluster id mismatch" in text]
        assert refusing and all(b.cluster_id in logs[n] for n in refusing)
        b_log = b.nodes["n2"].log_path.read_text()
        assert "refused us: cluster id mismatch" in b_log and a.cluster_id in b_log
        assert not any("Traceback" in text for text in [*logs.values(), b_log])
        # Both clusters are healthy: a exactly as it was, b's other two hold a quorum.
        assert whole(a, a.ids) == before
        a.stub("n1").Register(
            pb.RegisterRequest(spec=pb.NameSpec(name="a/1", kind="counter")), timeout=5
        )
        b.stub("n1").Register(
            pb.RegisterRequest(spec=pb.NameSpec(name="b/1", kind="counter")), timeout=5
        )
        assert "n2" not in {m.id for m in a.status("n1").members if m.incarnation > 1}
        assert not a.crashed() and not b.crashed()


def test_a_data_dir_keeps_its_cluster_id(tmp_path: Path) -> None:
    data = tmp_path / "n1"
    data.mkdir()
    (data / "cluster_id").write_text("prod-1\n")
    port = free_ports(1)[0]
    argv = ["node", "--id", "n1", "--data-dir", str(data), "--cluster-id", "prod-2"]
    done = subprocess.run(
        [sys.executable, "-m", "registry.cli", *argv, "--listen", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'prod-2' does not match 'prod-1'" in lines[0], done.stderr


def build_node_config_for_tests(argv: list[str]) -> NodeConfig:
    return node_config(build_parser().parse_args(["node", *argv]))


def test_a_public_peer_port_needs_tls_or_insecure_peers() -> None:
    with pytest.raises(ConfigError, match="not a loopback address and peer TLS is off"):
        build_node_config_for_tests(["--id", "n1", "--listen", "0.0.0.0:7400"])
    cfg = build_node_config_for_tests(
        ["--id", "n1", "--listen", "0.0.0.0:7400", "--insecure-peers", "--insecure-clients"]
    )
    assert cfg.peer_bind == "0.0.0.0:8400"
    cfg = build_node_config_for_tests(
        ["--id", "n1", "--peers", "n1=10.0.0.1:7400/10.0.0.1:9000,n2=10.0.0.2:7400"]
    )
    assert cfg.peers == {"n1": "10.0.0.1:7400", "n2": "10.0.0.2:7400"}
    assert (cfg.peer_address("n1"), cfg.peer_address("n2")) == ("10.0.0.1:9000", "10.0.0.2:8400")
    assert cfg.peer_bind == "127.0.0.1:9000", "listen's host, the port the others use"
