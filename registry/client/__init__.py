"""The client SDK: ``Client`` (asyncio) and ``SyncClient`` (blocking), same methods.

Connect with one or more seed addresses; the client learns the rest of the cluster, keeps
a placement cache fed by a watch stream, sends calls straight to the owner of a name,
follows redirects, and retries through failover and handoff until the caller's deadline.
A ``call`` is at most once unless marked ``idempotent=True``. Errors are typed, all under
``registry.RegistryError`` (see ``registry.client.errors``). Everything public is listed in
``__all__``; the modules behind it are private.
"""

from __future__ import annotations

from registry.client.aio import DEFAULT_TIMEOUT_S, Client, ClientStats
from registry.client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NameTaken,
    NoQuorum,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Redirect,
    RegistryError,
    StorageFull,
    Superseded,
    Unauthenticated,
    Unavailable,
    WorkerError,
    translate,
)
from registry.client.fencing import FencedStore, StaleToken
from registry.client.retry import Backoff, should_retry
from registry.client.sync import ClientForked, SyncClient
from registry.client.tls import Tls
from registry.client.types import (
    ClusterStatus,
    Location,
    Member,
    Placed,
    Registration,
    Removed,
    Reset,
    Synced,
    Waiting,
    WatchEvent,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Backoff",
    "Client",
    "ClientForked",
    "ClientStats",
    "ClusterStatus",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FencedStore",
    "InternalError",
    "InvalidArgument",
    "Location",
    "Member",
    "NameTaken",
    "NoQuorum",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Placed",
    "Redirect",
    "Registration",
    "RegistryError",
    "Removed",
    "Reset",
    "StaleToken",
    "StorageFull",
    "Superseded",
    "SyncClient",
    "Synced",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Waiting",
    "WatchEvent",
    "WorkerError",
    "should_retry",
    "translate",
]
