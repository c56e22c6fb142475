"""Machine-readable errors on the wire: ``google.rpc.Status`` details (pure, no IO).

Every error status a node answers with on purpose carries, in the standard
``grpc-status-details-bin`` trailer, a ``google.rpc.Status`` whose details are:

- a ``google.rpc.ErrorInfo`` with ``domain = "registry.v1"``, a stable ``reason`` from
  ``REASONS`` and ``metadata`` (``leader``/``leader_address``, ``owner``/``owner_address``,
  ``node``: the node that answered);
- a ``google.rpc.RetryInfo`` exactly when ``REASONS[reason].retry`` is true: the request
  was refused before anything ran and may succeed later or elsewhere;
- a ``registry.v1.Redirect`` when the refusal names the leader or the name's owner.

Rules:

1. Clients decide from ``reason``, never from the message text (which is for people and
   may change). ``Reason.may_have_run`` says whether the request may have executed;
   ``Reason.retry`` whether retrying is safe without knowing more.
2. A status without ErrorInfo did not come from a node's own refusal: it is the gRPC
   library's (connection refused, deadline passed, stream reset) or an older node's.
3. The legacy trailers ``registry-reason``, ``registry-leader``, ``registry-owner``
   (``id@host:port``) are still sent and read, so older SDKs and nodes keep working in a
   mixed cluster. The details win where both are present.

``docs/protocol.md`` lists the reasons for other-language clients (a test keeps the two
in step).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from registry.v1 import registry_pb2 as pb

__all__ = [
    "DETAILS_KEY",
    "DOMAIN",
    "LEADER_KEY",
    "OWNER_KEY",
    "REASONS",
    "REASON_KEY",
    "Details",
    "Reason",
    "decode",
    "encode",
]

DOMAIN = "registry.v1"
DETAILS_KEY = "grpc-status-details-bin"
LEADER_KEY = "registry-leader"
OWNER_KEY = "registry-owner"
REASON_KEY = "registry-reason"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """One stable refusal reason."""

    name: str
    """The ``ErrorInfo.reason`` string, e.g. ``"NAME_TAKEN"``."""
    code: str
    """The gRPC status code name it travels with."""
    retry: bool
    """Refused before anything ran, and may succeed later or on another node: retry
    within the deadline (a RetryInfo is attached)."""
    may_have_run: bool
    """The request may have executed (retry only what is idempotent)."""
    doc: str
    """What it means, for people and for ``docs/protocol.md``."""


def _r(name: str, code: str, doc: str, *, retry: bool = False, ran: bool = False) -> Reason:
    return Reason(name=name, code=code, retry=retry, may_have_run=ran, doc=doc)


_TABLE = (
    _r("INVALID_ARGUMENT", "INVALID_ARGUMENT", "A malformed field (name, kind, role, limits)."),
    _r("MALFORMED", "INVALID_ARGUMENT", "The request message did not parse."),
    _r("PAYLOAD_TOO_LARGE", "RESOURCE_EXHAUSTED", "A payload over `max_payload_bytes`."),
    _r("NOSPACE", "RESOURCE_EXHAUSTED", "The node's disk is below its reserve; writes refused."),
    _r("NAME_TAKEN", "ALREADY_EXISTS", "The name is already registered."),
    _r("ALREADY_IN_GROUP", "ALREADY_EXISTS", "The name is already in that group."),
    _r("NOT_FOUND", "NOT_FOUND", "No such name, group, or group member."),
    _r("UNREGISTERING", "FAILED_PRECONDITION", "The name is still stopping after unregister."),
    _r("NO_HOST", "FAILED_PRECONDITION", "No member runs that kind or offers those roles."),
    _r("NO_MEMBERS", "UNAVAILABLE", "No member has joined the cluster yet.", retry=True),
    _r("NO_QUORUM", "UNAVAILABLE", "No quorum, or no leader is known.", retry=True),
    _r("NOT_LEADER", "UNAVAILABLE", "Not the leader; `leader` names it if known.", retry=True),
    _r(
        "NOT_RUN",
        "UNAVAILABLE",
        "Refused before it ran (leadership or config change, a lagging replica).",
        retry=True,
    ),
    _r("NO_LEASE", "UNAVAILABLE", "The node holds no lease; it serves no workers.", retry=True),
    _r("NOT_OWNER", "UNAVAILABLE", "The name runs elsewhere; `owner` names the node.", retry=True),
    _r("MOVING", "UNAVAILABLE", "The name is not running here (stopped or moving).", retry=True),
    _r("WAITING", "UNAVAILABLE", "The name waits for an eligible member to run it.", retry=True),
    _r("UNREACHABLE", "UNAVAILABLE", "The node forwarded to could not be reached.", retry=True),
    _r("CONNECTION_LOST", "UNAVAILABLE", "The forward broke after sending.", ran=True),
    _r("WORKER_ERROR", "ABORTED", "The worker raised, or its activation failed.", ran=True),
    _r("STALE_TOKEN", "ABORTED", "An older activation's command, superseded by a newer one."),
    _r("WORKER_TIMEOUT", "DEADLINE_EXCEEDED", "The worker did not answer in time.", ran=True),
    _r("INTERNAL", "INTERNAL", "A bug; the message names the exception.", ran=True),
    # Limits (docs/security.md): refused before anything ran.
    _r("ENTRY_TOO_LARGE", "RESOURCE_EXHAUSTED", "The log entry would exceed `max_entry_bytes`."),
    _r("MAILBOX_FULL", "RESOURCE_EXHAUSTED", "The activation's mailbox is at its bound."),
    _r("TOO_MANY_RPCS", "RESOURCE_EXHAUSTED", "Concurrent RPCs at the node's or caller's cap."),
    _r("TOO_MANY_WATCHES", "RESOURCE_EXHAUSTED", "Watch streams at `max_watch_streams`."),
    _r("FANOUT_TOO_LARGE", "RESOURCE_EXHAUSTED", "Group size × payload over `max_fanout_bytes`."),
    # Client authentication and authorisation:
    _r("MISSING_TOKEN", "UNAUTHENTICATED", "No `authorization: Bearer …` token was sent."),
    _r("UNKNOWN_TOKEN", "UNAUTHENTICATED", "The token is not in the node's token file."),
    _r("UNKNOWN_IDENTITY", "UNAUTHENTICATED", "The client certificate names no known identity."),
    _r("PERMISSION", "PERMISSION_DENIED", "The caller lacks the permission on that name prefix."),
    # Membership admin (registry.v1.Admin):
    _r("NOT_CAUGHT_UP", "FAILED_PRECONDITION", "A learner to promote has not caught up yet."),
    _r("LAST_VOTER", "FAILED_PRECONDITION", "Removing the last voter is refused."),
    _r(
        "QUORUM_AT_RISK",
        "FAILED_PRECONDITION",
        "The removal would leave no reachable majority of voters (`force` overrides).",
    ),
    _r("RETIRED", "FAILED_PRECONDITION", "The member id was removed from this cluster for good."),
)
REASONS: dict[str, Reason] = {r.name: r for r in _TABLE}
"""Every reason a node sends, by name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Details:
    """What a status's trailers say beyond code and message."""

    reason: str = ""
    """``ErrorInfo.reason`` (or the legacy trailer), ``""`` if none."""
    metadata: tuple[tuple[str, str], ...] = ()
    """``ErrorInfo.metadata``, sorted."""
    leader: tuple[str, str] | None = None
    """``(node id, address)`` of the leader a follower pointed to."""
    owner: tuple[str, str] | None = None
    """``(node id, address)`` of the node holding the name."""
    retry_delay: float | None = None
    """``RetryInfo.retry_delay`` in seconds, if sent."""


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def encode(
    code: int,
    message: str,
    reason: str,
    *,
    leader: tuple[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    node: str = "",
    retry_delay: float = 0.05,
) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata for a status ``code`` (its number) with ``message`` and
    ``reason``: the rich details (module docstring) and the legacy trailers."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    legacy: list[tuple[str, str | bytes]] = [(REASON_KEY, reason)]
    redirect = pb.Redirect()
    if leader is not None:
        info.metadata["leader"], info.metadata["leader_address"] = leader
        redirect.leader, redirect.leader_address = leader
        legacy.append((LEADER_KEY, "@".join(leader)))
    if owner is not None:
        info.metadata["owner"], info.metadata["owner_address"] = owner
        redirect.owner, redirect.owner_address = owner
        legacy.append((OWNER_KEY, "@".join(owner)))
    if node:
        info.metadata["node"] = node
    details = [_pack(info)]
    known = REASONS.get(reason)
    if known is not None and known.retry:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_delay * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if leader is not None or owner is not None:
        details.append(_pack(redirect))
    status = status_pb2.Status(code=code, message=message, details=details)
    return ((DETAILS_KEY, status.SerializeToString()), *legacy)


def _split(value: str) -> tuple[str, str] | None:
    node, sep, address = value.partition("@")
    return (node, address) if sep and node and ":" in address else None


def _pair(node: str, address: str) -> tuple[str, str] | None:
    return (node, address) if node and address else None


def decode(metadata: Iterable[tuple[str, str | bytes]]) -> Details:
    """Read the details (and, where they are missing, the legacy trailers) from a
    status's trailing ``metadata``; a malformed value is ignored."""
    reason = ""
    info: dict[str, str] = {}
    leader = owner = None
    retry_delay = None
    legacy: dict[str, str] = {}
    for key, value in metadata:
        if key == DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                continue
            for item in status.details:
                error_info = error_details_pb2.ErrorInfo()
                retry_info = error_details_pb2.RetryInfo()
                redirect = pb.Redirect()
                if item.Unpack(error_info) and error_info.domain == DOMAIN:
                    reason, info = error_info.reason, dict(error_info.metadata)
                elif item.Unpack(retry_info):
                    retry_delay = retry_info.retry_delay.ToNanoseconds() / 1e9
                elif item.Unpack(redirect):
                    leader = _pair(redirect.leader, redirect.leader_address)
                    owner = _pair(redirect.owner, redirect.owner_address)
        elif key in (REASON_KEY, LEADER_KEY, OWNER_KEY):
            legacy[key] = value.decode() if isinstance(value, bytes) else value
    reason = reason or legacy.get(REASON_KEY, "")
    leader = leader or _pair(info.get("leader", ""), info.get("leader_address", ""))
    owner = owner or _pair(info.get("owner", ""), info.get("owner_address", ""))
    leader = leader or _split(legacy.get(LEADER_KEY, ""))
    owner = owner or _split(legacy.get(OWNER_KEY, ""))
    return Details(
        reason=reason,
        metadata=tuple(sorted(info.items())),
        leader=leader,
        owner=owner,
        retry_delay=retry_delay,
    )
