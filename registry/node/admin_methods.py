"""The gRPC methods of ``registry.v1.Admin`` (membership, snapshots): client auth gates
exactly these behind the ``admin`` permission. Apart so the auth gate need not import
the admin service (which imports the client service)."""

from __future__ import annotations

__all__ = ["ADMIN_METHODS"]

ADMIN_METHODS = frozenset(
    f"/registry.v1.Admin/{name}"
    for name in ("MemberAdd", "MemberPromote", "MemberRemove", "MemberList", "SnapshotSave")
)
"""Full gRPC method names that need the ``admin`` permission (client auth)."""
