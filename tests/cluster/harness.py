"""The real-process cluster harness, kept importable under its old name.

The machinery moved to ``registry.testing.local_cluster`` so that ``registry bench`` (a
shipped command) can use it without a checkout; tests keep importing from here.
"""

from __future__ import annotations

from pathlib import Path

from registry.testing.local_cluster import (
    CHANNEL_OPTIONS,
    PACKAGE_ROOT,
    RPC_TIMEOUT_S,
    STOP_GRACE_S,
    TRANSIENT,
    LocalCluster,
    NodeProc,
    NotYet,
    Timeout,
    call_until,
    cluster,
    describe,
    free_ports,
    register_until,
    rpc_error,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
"""The checkout's root (tests run commands such as ``examples/...`` from it)."""

__all__ = [
    "CHANNEL_OPTIONS",
    "PACKAGE_ROOT",
    "REPO",
    "RPC_TIMEOUT_S",
    "STOP_GRACE_S",
    "TRANSIENT",
    "LocalCluster",
    "NodeProc",
    "NotYet",
    "Timeout",
    "call_until",
    "cluster",
    "describe",
    "free_ports",
    "register_until",
    "rpc_error",
    "wait_for",
]
