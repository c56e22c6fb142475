"""The one place where errors become gRPC status codes (house rule 9).

Redirects travel as trailing metadata (``registry-leader``, ``registry-owner``: an
``id@host:port`` value) so that clients can follow them without extra protos.
"""

from __future__ import annotations

import grpc

from registry.core.errors import NotLeader, ProposalRejected, RegistryError
from registry.core.state import Code

CODE_TO_STATUS = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.STALE: grpc.StatusCode.ABORTED,
}

LEADER_KEY = "registry-leader"
OWNER_KEY = "registry-owner"


class Abort(Exception):
    """Raised inside a servicer to end the RPC with ``code`` and ``message``."""

    def __init__(
        self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map a known error to a status; anything else is INTERNAL with its type named."""
    if isinstance(exc, Abort):
        return exc.code, exc.message
    # Imported here: the worker package is optional for the core-facing parts.
    from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed

    if isinstance(exc, NotLeader):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, NoLease):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, NotHere):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, CallTimeout | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "timed out"
    if isinstance(exc, WorkerFailed):
        return grpc.StatusCode.ABORTED, str(exc)
    if isinstance(exc, ProposalRejected | RegistryError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}): {exc}"
