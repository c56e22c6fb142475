"""Errors the worker runtime raises to callers of ``call`` and ``cast``.

They belong to the project's one hierarchy (``RegistryError``); the node layer maps each to
a gRPC status in one place (house rule 9). Each carries the worker's ``name`` so a client
can tell which call failed, and a message a person can act on.
"""

from __future__ import annotations

from registry.core.errors import LimitExceeded, RegistryError


class NoLease(RegistryError):
    """This node holds no lease right now, so it may not run or serve any worker (G1).

    Retry later or elsewhere: the name runs again wherever the quorum places it.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(
            f"node {node} holds no lease: it serves no workers until it rejoins the quorum"
        )


class NotHere(RegistryError):
    """The name is not running on this node (never was, stopped, or is moving away).

    Look the name up again and retry on its current owner.
    """

    def __init__(self, name: str, why: str = "") -> None:
        self.name = name
        self.why = why
        detail = f" ({why})" if why else ""
        super().__init__(f"worker {name!r} is not running on this node{detail}")


class WorkerFailed(RegistryError):
    """The worker raised while handling the request, or cannot run at all.

    ``reason`` is the worker's exception text (``"ValueError: unknown command"``) or why
    the activation gave up (``"restarted too often …"``, an unknown kind).
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"worker {name!r} failed: {reason}")


class CallTimeout(RegistryError):
    """The worker did not answer within the caller's timeout (seconds).

    The request may still be handled later; its reply is then discarded.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"worker {name!r} did not answer within {timeout:g} s")


class MailboxFull(LimitExceeded):
    """The activation's mailbox holds as many messages (or bytes) as it may; the call or
    cast was refused without being queued. Retry later, more slowly."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        super().__init__("MAILBOX_FULL", f"worker {name!r} mailbox is full: {what}")


class CheckpointFailed(RegistryError):
    """``ctx.checkpoint`` could not be committed in time (no leader, no quorum). It may
    still be applied later; retry, or carry on and checkpoint again."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        super().__init__(f"checkpoint of worker {name!r} not committed: {why}")
