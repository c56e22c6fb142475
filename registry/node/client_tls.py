"""TLS on the client port (``client_cert``/``client_key``, optionally ``client_ca``).

Rules
-----
1. With ``client_cert`` and ``client_key`` the client port speaks only TLS; a plaintext
   client fails its handshake (the SDK reports it as ``Unavailable``).
2. With ``client_ca`` too, a client must present a certificate chaining to it; its CN is
   the caller's identity for ``auth = "mtls"`` (``registry.node.auth``).
3. Nodes forward requests (writes to the leader, calls to the owner) to each other's
   client port. They verify the target's certificate against the cluster CA
   (``peer_ca``) by node id — a node's certificate names its id as a SAN — and present
   their own peer certificate, so ``client_cert`` must be issued by the cluster CA and
   ``client_ca``, when set, must include it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from registry.node.config import NodeConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    cert: bytes
    key: bytes
    client_ca: bytes | None
    peer_ca: bytes
    peer_cert: bytes
    peer_key: bytes

    @staticmethod
    def load(cfg: NodeConfig) -> ClientTls | None:
        """The files of ``cfg`` (``None``: client TLS off); ``OSError`` names a missing
        file."""
        if not cfg.client_tls:
            return None
        return ClientTls(
            cert=Path(cfg.client_cert).read_bytes(),
            key=Path(cfg.client_key).read_bytes(),
            client_ca=Path(cfg.client_ca).read_bytes() if cfg.client_ca else None,
            peer_ca=Path(cfg.peer_ca).read_bytes(),
            peer_cert=Path(cfg.peer_cert).read_bytes(),
            peer_key=Path(cfg.peer_key).read_bytes(),
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def forward_credentials(self) -> grpc.ChannelCredentials:
        """For this node's requests to another node's client port (rule 3)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.peer_ca,
            private_key=self.peer_key,
            certificate_chain=self.peer_cert,
        )
