"""Typed client errors, and the one function that turns a gRPC status into one of them.

Every error the SDK raises on purpose is a ``registry.RegistryError`` (the project's one
hierarchy, house rule 9). The subclasses mirror the gRPC status codes a node answers with
(DESIGN §1, G7); ``translate`` is the only place that maps a status to a class. It reads
the ``google.rpc.Status`` details (``registry.wire.errors``: the ``ErrorInfo`` reason, the
leader / owner redirect; the legacy ``registry-*`` trailers of older nodes too) and decides
from the *reason*, never from the message text, whether the request may already have been
executed (``may_have_run``), which is what the retry rules in ``registry.client.retry``
need. A status without a reason did not come from a node's refusal (the gRPC library's
own: connection refused, stream reset; or an older node): only then does the gRPC
library's text tell "never connected" (not run) from "broke after sending".

=======================  ==========================================================
status                   exception
=======================  ==========================================================
ALREADY_EXISTS           ``NameTaken``
NOT_FOUND                ``NotFound``
INVALID_ARGUMENT         ``InvalidArgument``
FAILED_PRECONDITION      ``FailedPrecondition``
RESOURCE_EXHAUSTED       ``StorageFull`` when the reason is ``NOSPACE`` (the node's disk
                         is below its reserve), ``Overloaded`` for ``MAILBOX_FULL``,
                         ``TOO_MANY_RPCS``, ``TOO_MANY_WATCHES`` (retry later), else
                         ``PayloadTooLarge`` (also ``ENTRY_TOO_LARGE``,
                         ``FANOUT_TOO_LARGE``: retrying the same request cannot help)
DEADLINE_EXCEEDED        ``DeadlineExceeded``
UNAUTHENTICATED          ``Unauthenticated`` (also PERMISSION_DENIED)
ABORTED                  ``WorkerError`` (reason ``WORKER_ERROR``: the worker raised, or
                         cannot run); ``Superseded`` (reason ``STALE_TOKEN``)
UNAVAILABLE              ``NoQuorum`` when the reason is ``NO_QUORUM``, else
                         ``Unavailable`` (also CANCELLED)
anything else            ``InternalError``
=======================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from registry.core.errors import RegistryError
from registry.wire.errors import REASONS, decode

__all__ = [
    "DeadlineExceeded",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "NameTaken",
    "NoQuorum",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Redirect",
    "RegistryError",
    "StorageFull",
    "Superseded",
    "Unauthenticated",
    "Unavailable",
    "WorkerError",
    "translate",
]

# gRPC library texts (a status without a reason) that say the request never left: the
# transport's "never connected" failures. Anything else (e.g. "Socket closed",
# "Connection reset by peer") may have been cut off after the request was delivered.
_NOT_RUN_MARKERS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "dns resolution failed",
    "name resolution",
    "no route to host",
)
# UNAVAILABLE details that say the transport failed (nothing answered, or the connection
# broke), as opposed to a node answering that it cannot serve the request.
_TRANSPORT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "socket closed",
    "connection reset",
    "broken pipe",
    "goaway",
    "keepalive",
    "dns resolution failed",
    "no route to host",
)


@dataclass(frozen=True, slots=True)
class Redirect:
    """A node named in redirect metadata: its id and gRPC address."""

    node: str
    """Node id, e.g. ``"n2"``."""
    address: str
    """Its gRPC ``host:port``."""

    @staticmethod
    def parse(value: str) -> Redirect | None:
        """Parse ``id@host:port``; ``None`` if the value is not in that form."""
        node, sep, address = value.partition("@")
        if not sep or not node or ":" not in address:
            return None
        return Redirect(node=node, address=address)


class _StatusError(RegistryError):
    """Shared fields of the errors a node answers with (private base)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        address: str = "",
        may_have_run: bool = False,
        unreachable: bool = False,
        leader: Redirect | None = None,
        owner: Redirect | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """The gRPC status code name (``"NOT_FOUND"``), or ``""`` for a local error."""
        self.address = address
        """The address of the node that answered (or could not be reached)."""
        self.may_have_run = may_have_run
        """``True`` when the request may have been executed before the failure (the
        connection broke after sending, a deadline passed, the worker raised): the SDK
        does not retry such a ``call``/``cast`` unless it is marked idempotent."""
        self.unreachable = unreachable
        """The transport failed: the node asked (or the one it forwarded to) could not
        be reached, or the connection broke."""
        self.leader = leader
        """The leader a follower pointed to (status details), if any."""
        self.owner = owner
        """The node that holds the name (status details), if any."""
        self.reason = reason
        """The stable machine-readable reason (``ErrorInfo.reason``), e.g. ``NOSPACE``,
        ``NAME_TAKEN``, ``NO_QUORUM``; ``""`` when the status carried none. The reasons
        are listed in ``docs/protocol.md``."""

    def replace(self, message: str, *, may_have_run: bool) -> _StatusError:
        """A copy of this error, same class and fields, with a new message (and
        ``may_have_run`` or-ed in)."""
        return type(self)(
            message,
            code=self.code,
            address=self.address,
            may_have_run=self.may_have_run or may_have_run,
            unreachable=self.unreachable,
            leader=self.leader,
            owner=self.owner,
            reason=self.reason,
        )


class NameTaken(_StatusError):
    """ALREADY_EXISTS: the name is already registered (or already in that group)."""


class NotFound(_StatusError):
    """NOT_FOUND: no such name, group, or group member."""


class InvalidArgument(_StatusError):
    """INVALID_ARGUMENT: a malformed request (empty or over-long name, empty priority
    tier, too many names in one batch, …). Nothing was changed."""


class FailedPrecondition(_StatusError):
    """FAILED_PRECONDITION: well-formed but impossible now (no member runs that kind or
    offers those roles; the name is still stopping after an unregister)."""


class PayloadTooLarge(_StatusError):
    """RESOURCE_EXHAUSTED: a payload or ``args`` over the node's ``max_payload_bytes``
    (or over the gRPC message limit)."""


class StorageFull(_StatusError):
    """RESOURCE_EXHAUSTED with reason ``NOSPACE``: the node's disk is below its free-space
    reserve and it refuses writes until space is freed (reads keep working). Nothing was
    changed; another node (or the same one later) may take the write."""


class Overloaded(_StatusError):
    """RESOURCE_EXHAUSTED with reason ``MAILBOX_FULL``, ``TOO_MANY_RPCS`` or
    ``TOO_MANY_WATCHES``: a node or worker is at one of its concurrency bounds. Nothing
    was run or changed; retry later with backoff."""


OVERLOAD_REASONS = frozenset({"MAILBOX_FULL", "TOO_MANY_RPCS", "TOO_MANY_WATCHES"})


class DeadlineExceeded(_StatusError):
    """DEADLINE_EXCEEDED: no answer within the caller's timeout. The request may still
    have run (``may_have_run`` is ``True``)."""


class Unauthenticated(_StatusError):
    """UNAUTHENTICATED or PERMISSION_DENIED: the node refused the caller's credentials."""


class WorkerError(_StatusError):
    """ABORTED: the worker raised while handling the request (the message carries its
    exception text), or its activation failed. It ran: not retried."""


class Superseded(_StatusError):
    """ABORTED with reason ``STALE_TOKEN``: the command came from an activation or
    incarnation that a newer one has replaced. Nothing was changed."""


class Unavailable(_StatusError):
    """UNAVAILABLE: no node could serve the request in time: unreachable, moving,
    not the owner, no lease. Retried until the deadline before it is raised; check
    ``may_have_run`` before retrying it yourself."""


class NoQuorum(Unavailable):
    """UNAVAILABLE with reason ``NO_QUORUM``: the node asked has no quorum or knows no
    leader; the message says why ("no quorum: 1 of 3 voters reachable")."""


class InternalError(_StatusError):
    """Any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, …): a bug or a version
    mismatch; the message names the status."""


_BY_CODE: dict[grpc.StatusCode, type[_StatusError]] = {
    grpc.StatusCode.ALREADY_EXISTS: NameTaken,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: PayloadTooLarge,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.ABORTED: WorkerError,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
}
# Codes after which the request may have been executed.
_MAY_HAVE_RUN = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
}


def translate(
    code: grpc.StatusCode | str,
    details: str,
    metadata: Iterable[tuple[str, str | bytes]] = (),
    *,
    address: str = "",
) -> RegistryError:
    """The typed error for a status ``code`` (or its name, as ``MultiCall`` results
    carry it), its ``details`` and trailing ``metadata``, from the node at ``address``.

    The one status-to-exception mapping of the SDK; see the module docstring's table.
    """
    if isinstance(code, str):
        code = grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)
    details = details or code.name.lower().replace("_", " ")
    info = decode(metadata)
    reason = REASONS.get(info.reason)
    cls = _BY_CODE.get(code, InternalError)
    if cls is Unavailable and info.reason == "NO_QUORUM":
        cls = NoQuorum
    elif cls is PayloadTooLarge and info.reason == "NOSPACE":
        cls = StorageFull
    elif cls is WorkerError and info.reason == "STALE_TOKEN":
        cls = Superseded
    elif cls is PayloadTooLarge and info.reason in OVERLOAD_REASONS:
        cls = Overloaded
    lowered = details.lower()
    if reason is not None:
        may_have_run = reason.may_have_run
        unreachable = reason.name in ("UNREACHABLE", "CONNECTION_LOST")
    elif info.retry_delay is not None:  # a reason newer than this SDK, marked retryable
        may_have_run = unreachable = False
    else:  # no reason: the transport's own status (or an older node)
        if code in _MAY_HAVE_RUN:
            may_have_run = True
        elif code is grpc.StatusCode.UNAVAILABLE:
            may_have_run = not any(m in lowered for m in _NOT_RUN_MARKERS)
        else:
            may_have_run = False
        unreachable = cls is Unavailable and any(m in lowered for m in _TRANSPORT_MARKERS)
    message = details if cls is not InternalError else f"{code.name}: {details}"
    return cls(
        message,
        code=code.name,
        address=address,
        may_have_run=may_have_run,
        unreachable=unreachable,
        leader=Redirect(*info.leader) if info.leader else None,
        owner=Redirect(*info.owner) if info.owner else None,
        reason=info.reason,
    )
