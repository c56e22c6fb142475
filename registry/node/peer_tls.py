"""Peer mTLS credentials and the authenticated identity of a peer stream.

Both sides present a certificate signed by the cluster CA (``registry certs``). The
server requires one (``require_client_auth``); the client checks that the server's
certificate names the node it meant to reach (``ssl_target_name_override`` = that node's
id, matched against the certificate's SAN). The server takes the client certificate's
CN as the sender's identity: every message on the stream must carry it as ``src``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

IDENTITY_KEY = "x509_common_name"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerTls:
    ca: bytes
    cert: bytes
    key: bytes

    @staticmethod
    def load(ca: str, cert: str, key: str) -> PeerTls:
        """Read the three PEM files; ``OSError`` names the one that is missing."""
        return PeerTls(
            ca=Path(ca).read_bytes(), cert=Path(cert).read_bytes(), key=Path(key).read_bytes()
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def channel_options(peer: str) -> list[tuple[str, str]]:
    """Verify that the server's certificate is ``peer``'s, whatever address it has."""
    return [("grpc.ssl_target_name_override", peer)]


def stream_identity(context: grpc.aio.ServicerContext[object, object]) -> str | None:
    """The CN of the client certificate of this stream, or ``None`` (no TLS)."""
    values = list(context.auth_context().get(IDENTITY_KEY) or [])
    if len(values) != 1:
        return None
    try:
        return bytes(values[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None
