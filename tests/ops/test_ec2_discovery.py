"""EC2 discovery (issue 17) through the real boto3 client against moto's EC2 server mode:
a real HTTP server speaking the EC2 API on loopback, started here, with fake credentials.
Three running instances carry the cluster's tag (two name their node id in a tag, one
goes by its instance id); a stopped one and one of another cluster must not count."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from registry.cli import build_parser
from registry.cli.node import node_config
from registry.node.config import NodeConfig
from registry.node.discovery import DiscoveryFailed, discover
from registry.testing.local_cluster import free_ports

REGION = "eu-west-1"
AMI = "ami-12c6146b"  # one of moto's built-in images


@pytest.fixture
def ec2_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # moto's backends live in this process: start every test from an empty account.
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=10):
            pass
        yield endpoint
    finally:
        server.stop()


def _launch(ec2: Any, tags: dict[str, str]) -> dict[str, Any]:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    reply = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=spec)
    instance: dict[str, Any] = reply["Instances"][0]
    return instance


def _config(endpoint: str, *extra: str) -> NodeConfig:
    argv = ["node", "--id", "n1", "--discovery", "ec2", "--ec2-tag", "cluster=prod"]
    argv += ["--ec2-region", REGION, "--ec2-endpoint", endpoint, *extra]
    return node_config(build_parser().parse_args(argv))


def test_the_tagged_running_instances_are_the_voters(ec2_endpoint: str) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=ec2_endpoint)
    n1 = _launch(ec2, {"cluster": "prod", "registry-node-id": "n1"})
    n2 = _launch(ec2, {"cluster": "prod", "registry-node-id": "n2"})
    unnamed = _launch(ec2, {"cluster": "prod"})
    stopped = _launch(ec2, {"cluster": "prod", "registry-node-id": "n9"})
    ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
    _launch(ec2, {"cluster": "staging", "registry-node-id": "n8"})

    cfg = asyncio.run(discover(_config(ec2_endpoint, "--ec2-port", "7500")))
    assert cfg.peers == {
        "n1": f"{n1['PrivateIpAddress']}:7500",
        "n2": f"{n2['PrivateIpAddress']}:7500",
        unnamed["InstanceId"]: f"{unnamed['PrivateIpAddress']}:7500",
    }
    assert cfg.address == f"{n1['PrivateIpAddress']}:7500"
    assert cfg.peer_address("n2") == f"{n2['PrivateIpAddress']}:8500"


def test_too_few_instances_fail_with_what_was_found(ec2_endpoint: str) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=ec2_endpoint)
    _launch(ec2, {"cluster": "prod", "registry-node-id": "n1"})
    cfg = _config(ec2_endpoint, "--discovery-timeout", "1.5")
    with pytest.raises(DiscoveryFailed, match=r"found 1 of 3 peers under instances tagged"):
        asyncio.run(discover(cfg, poll=0.2))


def test_an_unreachable_ec2_api_is_named_in_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    (closed,) = free_ports(1)  # nothing listens there
    cfg = _config(f"http://127.0.0.1:{closed}", "--discovery-timeout", "1")
    with pytest.raises(DiscoveryFailed, match="EC2 DescribeInstances failed"):
        asyncio.run(discover(cfg, poll=0.2))
