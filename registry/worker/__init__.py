"""Workers: the user-facing API (``Worker`` and its hooks) and the runtime that runs them.

Write a worker by subclassing ``Worker``; a node runs activations of it through a
``WorkerRuntime``, which executes the effects the core emits (start, stop, handoff).
Everything public is listed in ``__all__``; the modules behind it are private.
"""

from __future__ import annotations

from registry.worker.api import (
    Context,
    HandoffAnswer,
    Ignore,
    Restart,
    Resume,
    StartReason,
    StopCause,
    Worker,
)
from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed
from registry.worker.policy import ActivationState, ActivationStatus
from registry.worker.runtime import RuntimeReports, WorkerRuntime

__all__ = [
    "ActivationState",
    "ActivationStatus",
    "CallTimeout",
    "Context",
    "HandoffAnswer",
    "Ignore",
    "NoLease",
    "NotHere",
    "Restart",
    "Resume",
    "RuntimeReports",
    "StartReason",
    "StopCause",
    "Worker",
    "WorkerFailed",
    "WorkerRuntime",
]
