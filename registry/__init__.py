"""quorum-registry: a partition-safe (CP) distributed registry of named workers.

The public API is what ``__all__`` lists; every other module is an implementation detail.
Worker and client names are loaded lazily, so ``import registry.core`` stays free of
asyncio, grpc and friends (the sans-IO core must not pull in the IO layers just by
importing).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from registry.core.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    from registry.client import (
        Client,
        ClusterStatus,
        DeadlineExceeded,
        FailedPrecondition,
        FencedStore,
        InternalError,
        InvalidArgument,
        Location,
        Member,
        NameTaken,
        NoQuorum,
        NotFound,
        PayloadTooLarge,
        Registration,
        StaleToken,
        SyncClient,
        Unauthenticated,
        Unavailable,
        WorkerError,
    )
    from registry.worker import (
        Context,
        Ignore,
        Restart,
        Resume,
        StartReason,
        StopCause,
        Worker,
    )

__version__ = "0.1.0"

_CLIENT_NAMES = (
    "Client",
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
    "PayloadTooLarge",
    "Registration",
    "StaleToken",
    "SyncClient",
    "Unauthenticated",
    "Unavailable",
    "WorkerError",
)

_LAZY = {
    **dict.fromkeys(_CLIENT_NAMES, "registry.client"),
    "Context": "registry.worker",
    "Ignore": "registry.worker",
    "Restart": "registry.worker",
    "Resume": "registry.worker",
    "StartReason": "registry.worker",
    "StopCause": "registry.worker",
    "Worker": "registry.worker",
}

__all__ = [
    "Client",
    "ClusterStatus",
    "ConfigError",
    "Context",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FencedStore",
    "Ignore",
    "InternalError",
    "InvalidArgument",
    "Location",
    "Member",
    "NameTaken",
    "NoQuorum",
    "NotFound",
    "PayloadTooLarge",
    "Registration",
    "RegistryError",
    "Restart",
    "Resume",
    "StaleToken",
    "StartReason",
    "StopCause",
    "SyncClient",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    return getattr(import_module(module), name)
