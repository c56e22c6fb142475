"""How a CLI command reaches a node: ``--addr``, client TLS and a bearer token.

Every command that talks to a node takes the same four flags (``--ca``, ``--cert``,
``--key``, ``--token``, with ``$REGISTRY_CA`` and ``$REGISTRY_TOKEN`` as defaults). SDK
commands hand them to ``SyncClient``; admin commands (``member``, ``snapshot save``),
which speak to the Admin service with a raw stub, get a channel from ``admin_channel``
carrying the same TLS and token. A missing or unreadable PEM file is one line and exit
2 before anything is sent, not a hang later.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from registry.client.tls import Tls

DEFAULT_ADDR = "127.0.0.1:7400"


class BadConnectionArgs(ValueError):
    """The TLS or token flags cannot work; the message is one line for the user."""


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", help="client TLS: the CA of the nodes' certificates ($REGISTRY_CA)")
    parser.add_argument("--cert", help="client TLS: this client's certificate (PEM)")
    parser.add_argument("--key", help="client TLS: this client's private key (PEM)")
    parser.add_argument("--token", help="bearer token (default $REGISTRY_TOKEN)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    seeds: tuple[str, ...]
    tls: Tls | None
    token: str | None


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The addresses, TLS and token the flags (or the environment) ask for."""
    addr = getattr(args, "addr", None) or os.environ.get("REGISTRY_ADDR") or DEFAULT_ADDR
    seeds = tuple(a.strip() for a in addr.split(",") if a.strip())
    ca = args.ca or os.environ.get("REGISTRY_CA")
    if (args.cert or args.key) and not ca:
        raise BadConnectionArgs("--cert/--key need --ca (the node certificate's CA)")
    try:
        tls = Tls(ca=ca, cert=args.cert, key=args.key) if ca else None
        if tls is not None:
            tls.credentials()  # read the PEM files now
    except (OSError, ValueError) as exc:
        raise BadConnectionArgs(f"client TLS: {exc}") from exc
    token = args.token or os.environ.get("REGISTRY_TOKEN") or None
    return Connection(seeds=seeds, tls=tls, token=token)


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a synchronous channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def admin_channel(
    conn: Connection, options: Sequence[tuple[str, Any]] = ()
) -> tuple[grpc.Channel, grpc.Channel]:
    """``(channel, closable)``: a channel to the first address with the connection's TLS
    and token, and the underlying channel to close when done."""
    addr = conn.seeds[0]
    if conn.tls is not None:
        opts = [*options, *conn.tls.options()]
        raw = grpc.secure_channel(addr, conn.tls.credentials(), options=opts)
    else:
        raw = grpc.insecure_channel(addr, options=list(options))
    channel = grpc.intercept_channel(raw, _Bearer(conn.token)) if conn.token else raw
    return channel, raw
