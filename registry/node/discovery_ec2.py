"""EC2 discovery (``discovery = "ec2"``): the bootstrap voters are the running instances
carrying a tag, as Elixir's libcluster_ec2 finds its nodes.

Theory of operation:

1. ``DescribeInstances`` with the filters ``tag:<key> = <value>`` (``ec2_tag``) and
   ``instance-state-name = running`` (an instance that is stopping, stopped or pending is
   not a voter), following pagination.
2. An instance's node id is the value of its ``ec2_id_tag`` tag (default
   ``registry-node-id``), else its instance id: ids must be stable, and both are. Its
   address is its private IP and ``ec2_port`` (the gRPC port every node listens on; the
   peer port is that + 1000, as everywhere).
3. ``registry.node.discovery.discover`` polls this until exactly ``expect`` voters are
   listed (the same rules as DNS: more is an error, this node must be among them).

boto3 is synchronous: each round runs in a worker thread, with short connect/read
timeouts and two retries, so the event loop never blocks and a round is bounded. AWS
errors (no credentials, throttling, an endpoint that does not answer) count as "not
yet" and are named in the progress lines and the final error. Credentials and region
come from the usual boto3 chain (instance profile, environment); ``ec2_region`` and
``ec2_endpoint`` (a VPC endpoint, or a test server) override.
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry.node.config import NodeConfig

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
DEFAULT_ID_TAG = "registry-node-id"


class Ec2Lookup:
    """One round: the tagged running instances as ``node id -> private ip:port``."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.key, _, self.value = cfg.ec2_tag.partition("=")
        self.id_tag = cfg.ec2_id_tag or DEFAULT_ID_TAG
        self.port = cfg.ec2_port
        self._region = cfg.ec2_region or None
        self._endpoint = cfg.ec2_endpoint or None
        self._client: Any = None

    def _ec2(self) -> Any:
        if self._client is None:
            import boto3  # optional dependency: pip install 'quorum-registry[ec2]'
            from botocore.config import Config

            self._client = boto3.client(
                "ec2",
                region_name=self._region,
                endpoint_url=self._endpoint,
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_S,
                    read_timeout=READ_TIMEOUT_S,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            )
        return self._client

    async def __call__(self) -> dict[str, str]:
        return await asyncio.to_thread(self._round)

    def _round(self) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        filters = [
            {"Name": f"tag:{self.key}", "Values": [self.value]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        try:
            pages = self._ec2().get_paginator("describe_instances").paginate(Filters=filters)
            instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"EC2 DescribeInstances failed: {exc}") from None
        return peers_from_instances(instances, self.id_tag, self.port)


def peers_from_instances(instances: list[dict[str, Any]], id_tag: str, port: int) -> dict[str, str]:
    """``node id -> private-ip:port`` (rule 2). Instances without a private IP (not yet
    networked) are skipped; two instances claiming one id are an error."""
    from registry.node.discovery import DiscoveryFailed

    peers: dict[str, str] = {}
    for instance in sorted(instances, key=lambda i: str(i.get("InstanceId", ""))):
        ip = instance.get("PrivateIpAddress")
        if not ip:
            continue
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", ())}
        node = tags.get(id_tag) or str(instance["InstanceId"])
        address = f"{ip}:{port}"
        if peers.get(node, address) != address:
            raise DiscoveryFailed(
                f"ec2 discovery: two running instances claim node id {node!r} "
                f"({peers[node]} and {address}); give each a distinct {id_tag} tag"
            )
        peers[node] = address
    return peers
