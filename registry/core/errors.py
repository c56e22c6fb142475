"""One error hierarchy for the whole project (house rule 9).

The core raises these; the node layer translates them to gRPC status codes in one place.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error quorum-registry raises on purpose."""


class ConfigError(RegistryError, ValueError):
    """A configuration contradicts itself; the message names the contradiction."""


class ProposalRejected(RegistryError):
    """Raft refused a proposal; nothing was appended."""


class NotLeader(ProposalRejected):
    """This node is not the leader. ``leader`` is the known leader, or ``""``."""

    def __init__(self, leader: str) -> None:
        self.leader = leader
        where = f"the leader is {leader}" if leader else "no leader is known"
        super().__init__(f"not the leader: {where}")


class TransferInProgress(ProposalRejected):
    """The leader is handing leadership over and accepts no proposals meanwhile."""


class ConfChangeInProgress(ProposalRejected):
    """A membership change is still uncommitted; only one may be pending at a time."""


class LimitExceeded(RegistryError):
    """A request is over one of the node's limits and was refused before it changed
    anything. ``reason`` names the limit (``ENTRY_TOO_LARGE``, ``MAILBOX_FULL``, …, listed
    in ``registry/node/status.py``); the node answers RESOURCE_EXHAUSTED with it."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)
