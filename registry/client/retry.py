"""When the SDK retries, and how long it waits in between (pure: no IO, injected RNG).

Rules (DESIGN §4, issue 5):

1. Only ``Unavailable`` (which includes ``NoQuorum``) is retried: the node was
   unreachable, the name was moving or not here, the node had no lease or no leader.
   Every other error is an answer (bad input, not found, the worker raised) and is raised
   at once.
2. A request that *may already have run* (``may_have_run``: the connection broke after the
   request was sent, or the deadline passed) is retried only when the caller marked it
   ``idempotent``. Reads (``whereis``, ``members``, ``cluster``) are always idempotent;
   ``call`` and ``cast`` are at-most-once unless marked; writes are not retried after
   such a failure (a second ``register`` could answer ``NameTaken`` for its own first try).
3. A ``DeadlineExceeded`` answered by the node (its own limit, shorter than the caller's)
   is retried only for idempotent requests, and only while the caller's deadline allows.
4. Between attempts: jittered exponential backoff (``Backoff.delay``), never past the
   caller's deadline. A redirect to a node not just tried is followed at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from registry.client.errors import DeadlineExceeded, Unavailable
from registry.core.errors import RegistryError

__all__ = ["Backoff", "should_retry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Jittered exponential backoff ("equal jitter"): attempt ``n`` (from 0) waits a
    uniformly random time in ``[b/2, b]`` with ``b = min(maximum, initial·multiplier^n)``.
    """

    initial: float = 0.025
    """First base delay, seconds. Default 0.025."""
    maximum: float = 1.0
    """Cap on the base delay, seconds. Default 1.0."""
    multiplier: float = 2.0
    """Growth factor per attempt. Default 2.0."""

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.multiplier < 1:
            raise ValueError(
                "backoff needs 0 < initial <= maximum and multiplier >= 1 "
                f"(got initial={self.initial}, maximum={self.maximum}, "
                f"multiplier={self.multiplier})"
            )

    def base(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (0-based), seconds."""
        # Cap the exponent so a long outage cannot overflow the float.
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, rng: Random) -> float:
        """The jittered delay before retry number ``attempt``, in ``[base/2, base]``."""
        base = self.base(attempt)
        return rng.uniform(base / 2, base)


def should_retry(error: RegistryError, *, idempotent: bool) -> bool:
    """Whether ``error`` may be retried (rules 1–3 of the module docstring); the caller
    still checks its deadline."""
    may_have_run = bool(getattr(error, "may_have_run", False))
    if isinstance(error, Unavailable):
        return idempotent or not may_have_run
    if isinstance(error, DeadlineExceeded):
        return idempotent
    return False
