"""A cluster CA and node certificates for peer mTLS (``registry certs``, like
``consul tls ca create`` / ``consul tls cert create``).

Rules:

- One CA per cluster: ``ca.pem`` (certificate) and ``ca-key.pem`` (its private key,
  mode 0600). Whoever holds the CA key can mint a node identity: keep it off the nodes.
- A node certificate names the node id twice, as its subject CN and as a SAN DNS name.
  Peers check the SAN when they connect (``ssl_target_name_override`` = the id they
  meant to reach) and read the CN of the other side's client certificate as the
  authenticated sender of every message on that stream.
- Keys are ECDSA P-256 (fast to make: ``registry dev`` and the test harness mint a
  throwaway CA for every cluster); certificates are valid for both server and client
  authentication.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CA_DAYS = 3650
NODE_DAYS = 825
"""Validity of a node certificate, days (the longest most TLS stacks accept)."""


class CertError(Exception):
    """A CA or certificate could not be made or read; the message says which file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFiles:
    """Where one node's PEM files are (the three ``peer_*`` config fields)."""

    ca: Path
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _now() -> datetime.datetime:
    # Backdated a little: a peer whose clock is slightly behind must not see "not yet valid".
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def init_ca(directory: Path, *, name: str = "quorum-registry cluster CA") -> Path:
    """Create ``ca.pem`` and ``ca-key.pem`` in ``directory``; refuse to overwrite."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise CertError(f"{directory} already holds a CA ({CA_CERT}); not overwriting it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), secret=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except FileNotFoundError as exc:
        raise CertError(
            f"no CA in {directory} ({exc.filename}); run `registry certs init`"
        ) from None
    except ValueError as exc:
        raise CertError(f"the CA in {directory} does not load: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{directory / CA_KEY} is not an EC key")
    return cert, key


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def issue(directory: Path, node: str, *, sans: tuple[str, ...] = ()) -> NodeFiles:
    """Issue ``<node>.pem`` / ``<node>-key.pem`` in ``directory``, signed by its CA.
    The node id is the CN and the first SAN; ``sans`` (DNS names or IPs) are added."""
    if not node or "/" in node or node.startswith("."):
        raise CertError(f"bad node id {node!r}")
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    names = [_san(node), *(_san(s) for s in sans if s != node)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=NODE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = node_files(directory, node)
    _write(files.key, _key_pem(key), secret=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def node_files(directory: Path, node: str) -> NodeFiles:
    return NodeFiles(
        ca=directory / CA_CERT, cert=directory / f"{node}.pem", key=directory / f"{node}-key.pem"
    )


def dev_certs(directory: Path, nodes: list[str]) -> dict[str, NodeFiles]:
    """A throwaway CA in ``directory`` (kept if there) and a certificate per node (made
    once): what ``registry dev`` and the test harnesses give their clusters."""
    if not (directory / CA_CERT).exists():
        init_ca(directory, name="quorum-registry dev CA (throwaway)")
    out = {}
    for node in nodes:
        files = node_files(directory, node)
        out[node] = files if files.cert.exists() and files.key.exists() else issue(directory, node)
    return out


def tls_flags(files: NodeFiles) -> list[str]:
    """The ``registry node`` flags that turn peer mTLS on with ``files``."""
    return [
        "--peer-ca",
        str(files.ca),
        "--peer-cert",
        str(files.cert),
        "--peer-key",
        str(files.key),
    ]


def new_cluster_id(prefix: str = "dev") -> str:
    """A fresh random cluster id (``registry dev``, the test harnesses)."""
    return f"{prefix}-{secrets.token_hex(6)}"
