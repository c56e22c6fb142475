"""The runtime's limits and the vocabulary of ``WorkerRuntime.status()``."""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass

from registry.core.errors import ConfigError

log = logging.getLogger("registry.worker")


class ActivationState(enum.Enum):
    """Lifecycle state of one activation, as reported by ``WorkerRuntime.status()``."""

    STARTING = "starting"
    """``on_start`` is running, or a crashed instance waits for its restart backoff."""
    RUNNING = "running"
    """Serving its mailbox."""
    HANDING_OFF = "handing_off"
    """``begin_handoff`` is running."""
    STOPPING = "stopping"
    """A stop was requested; ``on_stop`` may still be running."""
    PASSIVE = "passive"
    """No instance: a ``lazy`` name before its first message, or passivated after
    ``idle_after``; the next message starts one."""
    FAILED = "failed"
    """Gave up (restarted too often, or no worker class for its kind); runs nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationStatus:
    """One activation as ``WorkerRuntime.status()`` reports it."""

    token: int
    """Its fencing token."""
    kind: str
    """Its worker kind."""
    state: ActivationState
    """Lifecycle state: starting, running, handing_off, stopping or failed."""
    restarts: int
    """How many times a crashed instance was replaced by a new one."""
    last_error: str
    """The last crash or failure, ``""`` if none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The runtime's timing and limits; documented on ``WorkerRuntime``."""

    fence_grace: float = 0.5
    """Seconds a stopped worker may take to end before the node must exit."""
    handoff_deadline: float = 2.0
    """Seconds ``begin_handoff`` may take (from ``BeginHandoff``)."""
    max_state_bytes: int = 1 << 20
    """Largest handoff state carried to the next owner (bytes)."""
    restart_backoff: tuple[float, float] = (0.05, 2.0)
    """First and largest delay (seconds) before restarting a crashed worker."""
    max_restarts: int = 5
    """Crashes tolerated within ``restart_window``; one more marks the activation failed."""
    restart_window: float = 10.0
    """Seconds over which crashes are counted."""
    mailbox_limit: int = 256
    """Messages one activation may have queued; more are refused (``MailboxFull``)."""
    mailbox_bytes: int = 64 << 20
    """Payload bytes one activation may have queued; more are refused (``MailboxFull``)."""

    def validate(self) -> Policy:
        """Raise ``ConfigError`` naming the first contradiction; return ``self``."""
        base, cap = self.restart_backoff
        problems = [
            (self.fence_grace <= 0, f"fence_grace must be > 0 s, got {self.fence_grace}"),
            (
                self.handoff_deadline <= 0,
                f"handoff_deadline must be > 0 s, got {self.handoff_deadline}",
            ),
            (self.max_state_bytes < 0, f"max_state_bytes must be >= 0, got {self.max_state_bytes}"),
            (not 0 < base <= cap, f"restart_backoff needs 0 < first <= largest, got {base, cap}"),
            (self.max_restarts < 0, f"max_restarts must be >= 0, got {self.max_restarts}"),
            (self.restart_window <= 0, f"restart_window must be > 0 s, got {self.restart_window}"),
            (self.mailbox_limit < 1, f"mailbox_limit must be >= 1, got {self.mailbox_limit}"),
            (self.mailbox_bytes < 1, f"mailbox_bytes must be >= 1, got {self.mailbox_bytes}"),
        ]
        for bad, why in problems:
            if bad:
                raise ConfigError(why)
        return self

    def backoff(self, crashes: int, rng: random.Random) -> float:
        """Seconds before the next restart after ``crashes`` recent crashes: doubling from
        the first delay up to the largest, times a jitter in [0.5, 1)."""
        base, cap = self.restart_backoff
        return min(cap, base * 2.0 ** (crashes - 1)) * rng.uniform(0.5, 1.0)

    def admit_state(self, name: str, state: object) -> bytes | None:
        """The handoff state to carry, or ``None`` (with a logged error) when it is not
        bytes or is larger than ``max_state_bytes``."""
        if not isinstance(state, bytes | bytearray | memoryview):
            log.error(
                "worker %s: Resume(state) needs bytes, got %s; it moves without state",
                name,
                type(state).__name__,
            )
            return None
        if len(state) > self.max_state_bytes:
            log.error(
                "worker %s: handoff state is %d bytes, above the limit of %d bytes "
                "(max_state_bytes); it moves without state",
                name,
                len(state),
                self.max_state_bytes,
            )
            return None
        return bytes(state)
