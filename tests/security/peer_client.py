"""An outsider's peer client: opens a Peer stream to a node's peer port with the
credentials it is given (none, a CA only, or a certificate of some identity) and sends
hand-made envelopes — what an attacker with the generated stubs would do."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

import grpc

from registry.node.certs import NodeFiles
from registry.node.transport import CLUSTER_KEY
from registry.testing.local_cluster import LocalCluster
from registry.v1 import peer_pb2, peer_pb2_grpc

STREAM_TIMEOUT_S = 20.0


def peer_channel(
    address: str, target: str, creds: NodeFiles | None, *, ca_only: bool = False
) -> grpc.Channel:
    """A channel to ``address``: plaintext (``creds`` None), TLS without a client
    certificate (``ca_only``), or mTLS with ``creds`` (verifying the server is ``target``)."""
    if creds is None:
        return grpc.insecure_channel(address)
    ca = creds.ca.read_bytes()
    if ca_only:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=creds.key.read_bytes(),
            certificate_chain=creds.cert.read_bytes(),
        )
    return grpc.secure_channel(address, credentials, [("grpc.ssl_target_name_override", target)])


def send(
    channel: grpc.Channel,
    envelopes: Sequence[peer_pb2.PeerEnvelope],
    *,
    cluster_id: str,
    every_s: float = 0.0,
) -> None:
    """One stream carrying ``envelopes`` (``every_s`` apart); raises ``grpc.RpcError``
    when the stream is refused."""

    def paced() -> Iterator[peer_pb2.PeerEnvelope]:
        for i, envelope in enumerate(envelopes):
            if i and every_s:
                time.sleep(every_s)  # the attacker's send rate, not a wait for a result
            yield envelope

    peer_pb2_grpc.PeerStub(channel).Stream(
        paced(), metadata=((CLUSTER_KEY, cluster_id),), timeout=STREAM_TIMEOUT_S
    )


def refused(c: LocalCluster, node: str) -> dict[str, float]:
    """``registry_peer_messages_refused_total`` of ``node``, by reason."""
    _, _, body = c.http_get(node, "/metrics")
    pattern = rb'^registry_peer_messages_refused_total\{reason="([a-z_]+)"\} (\S+)$'
    return {m[1].decode(): float(m[2]) for m in re.finditer(pattern, body, re.M)}
