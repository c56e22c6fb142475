"""Registrations that settle: what a careful SDK user does around an ambiguous write.

``register`` is not retried by the SDK once it may have been committed (a leader change
mid-write answers ``Unavailable`` with ``may_have_run``). Every name the bench registers
is unique to its run, so the bench can settle such a write itself: send it again, and a
``NameTaken`` on a *retry* means the first attempt was applied. ``register_many`` is all
or nothing, so the same holds for a batch. The time spent retrying is part of the
measurement; ``Settled`` counts what happened so the JSON shows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from registry.client import DeadlineExceeded, NameTaken, Unavailable

ATTEMPTS = 10


@dataclass(slots=True)
class Settled:
    retries: int = 0
    """Writes sent again after ``Unavailable``/``DeadlineExceeded``."""
    applied_before_retry: int = 0
    """Retries answered ``NameTaken``: the earlier attempt had been applied."""

    def to_json(self) -> dict[str, int]:
        return asdict(self)


async def settle(write: Callable[[], Awaitable[object]], counts: Settled) -> None:
    """Run ``write`` until it is known to be applied (see the module docstring)."""
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            await write()
            return
        except NameTaken:
            if attempt == 0:
                raise
            counts.applied_before_retry += 1
            return
        except (Unavailable, DeadlineExceeded) as exc:
            last = exc
            counts.retries += 1
    raise RuntimeError(f"a write did not settle after {ATTEMPTS} attempts: {last}") from last
