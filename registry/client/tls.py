"""TLS for the client port, as the SDK and the CLI use it.

``Tls(ca="ca.pem")`` verifies the node's certificate against ``ca`` (its SAN must name the
host or IP the client dials; ``server_name`` overrides that name for every node, e.g. when
dialing IPs that the certificate names by DNS). ``cert`` and ``key`` add a client
certificate, which a node with ``client_ca`` requires (``auth = "mtls"``: its CN is the
caller's identity).

Without a ``ca`` matching the node's certificate the first RPC fails: the SDK raises
``Unavailable`` whose message names the TLS handshake failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    ca: str | Path | bytes
    """The CA that signed the nodes' client-port certificates (a PEM path, or its bytes)."""
    cert: str | Path | bytes | None = None
    """This client's certificate (PEM), for nodes that require one (``client_ca``)."""
    key: str | Path | bytes | None = None
    """This client's private key (PEM)."""
    server_name: str = ""
    """Check the node certificate against this name instead of the dialed host."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials; ``OSError`` names a PEM file that cannot be read."""
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca),
            private_key=_pem(self.key) if self.key is not None else None,
            certificate_chain=_pem(self.cert) if self.cert is not None else None,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _pem(value: str | Path | bytes) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()
