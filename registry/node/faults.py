"""Fault injection for tests of fail-stop: real faults raised inside the real classes.

Off unless an environment variable names a *trigger file*; nothing happens until that file
exists, so a test starts a healthy node, then arms the fault by creating the file:

- ``REGISTRY_FAULT_FSYNC=/path/trigger[:SECONDS]`` — once the trigger exists, the next
  fsync of the log (``FileStorage``) blocks SECONDS (default 0: a disk that hangs, then
  fails) and raises ``OSError(EIO)``, as a failing disk does.
- ``REGISTRY_FAULT_SLOW_PERSIST=/path/trigger:SECONDS`` — while the trigger exists,
  every Ready's persist (``FileStorage.persist``, in its thread) takes SECONDS longer
  and then succeeds: a stalled disk, or a thread pool too busy to run it at once.
- ``REGISTRY_FAULT_CORE=/path/trigger`` — once the trigger exists, the core loop
  (``Driver._run``) raises ``InjectedFault`` on its next turn, as an invariant failure
  or a bug in the core would.

Production never sets these; they exist so that tests/storage can show the node's answer
to each fault (exit code, one log line, ``/healthz``) on real node processes, and tests
elsewhere widen a window that a loaded machine opens only now and then.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from registry.core.errors import RegistryError

__all__ = [
    "CORE_ENV",
    "FSYNC_ENV",
    "SLOW_PERSIST_ENV",
    "CoreFault",
    "FsyncFault",
    "InjectedFault",
    "SlowPersist",
]

FSYNC_ENV = "REGISTRY_FAULT_FSYNC"
CORE_ENV = "REGISTRY_FAULT_CORE"
SLOW_PERSIST_ENV = "REGISTRY_FAULT_SLOW_PERSIST"


def _trigger_and_seconds(env: str) -> tuple[Path, str] | None:
    """``/path/trigger[:SECONDS]`` from ``env``: the trigger and the seconds as written
    ("" when left out); None when the variable is unset or empty."""
    spec = os.environ.get(env, "")
    if not spec:
        return None
    path, _, seconds = spec.partition(":")
    return Path(path), seconds


class InjectedFault(RegistryError):
    """Raised by an armed ``CoreFault``: stands for any failure inside the core loop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FsyncFault:
    trigger: Path
    """The fault is armed once this file exists."""
    hang_s: float = 0.0
    """Seconds the failing fsync blocks before it raises."""

    @staticmethod
    def from_env() -> FsyncFault | None:
        spec = _trigger_and_seconds(FSYNC_ENV)
        if spec is None:
            return None
        trigger, hang = spec
        return FsyncFault(trigger=trigger, hang_s=float(hang or 0))

    def check(self, path: Path) -> None:
        """Called before each log fsync: fail it if armed."""
        if self.trigger.exists():
            time.sleep(self.hang_s)  # in the persist thread: the core loop waits on it
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (injected)", str(path))


@dataclass(frozen=True, slots=True, kw_only=True)
class SlowPersist:
    trigger: Path
    """Persists are slow while this file exists."""
    delay_s: float

    @staticmethod
    def from_env() -> SlowPersist | None:
        spec = _trigger_and_seconds(SLOW_PERSIST_ENV)
        if spec is None:
            return None
        trigger, delay = spec
        return SlowPersist(trigger=trigger, delay_s=float(delay or 1))

    def check(self) -> None:
        """Called at the start of each persist, in its thread."""
        if self.trigger.exists():
            time.sleep(self.delay_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreFault:
    trigger: Path

    @staticmethod
    def from_env() -> CoreFault | None:
        spec = os.environ.get(CORE_ENV, "")
        return CoreFault(trigger=Path(spec)) if spec else None

    def check(self) -> None:
        """Called once per core-loop turn: raise if armed."""
        if self.trigger.exists():
            raise InjectedFault(f"injected core-loop failure ({self.trigger} exists)")
