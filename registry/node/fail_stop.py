"""Fail-stop (DESIGN G9): a node that can no longer trust itself exits at once.

A failed core loop (a bug, an invariant failure) or a failed write or fsync of the log
(memory is then ahead of the disk, and after "fsyncgate" a failed fsync must never be
retried: the kernel may have dropped the dirty pages) leaves a node that could
acknowledge what it will forget. It exits with a distinct code and *one* log line; its
supervisor restarts it, and start-up re-reads the disk (``FileStorage.load``).

Exit codes, for supervisors (also in ``registry/node/server.py`` and the README):

- 2 (``EXIT_BAD_DATA``): bad configuration, a data directory in use, or a damaged data
  directory (see ``registry.node.storage_check``) — a restart will not help.
- 70 (``EXIT_CORE_FAILED``, sysexits EX_SOFTWARE): the core loop failed.
- 74 (``EXIT_STORAGE_IO``, sysexits EX_IOERR): a write or fsync of the data directory
  failed (EIO, ENOSPC, …).
- 75: a worker did not stop within ``fence_grace`` (``server.EXIT_FENCE_TIMEOUT``).
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import NoReturn

__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_CORE_FAILED",
    "EXIT_STORAGE_IO",
    "StorageIOFailed",
    "classify",
    "fail_stop",
]

log = logging.getLogger("registry.node")

EXIT_BAD_DATA = 2
EXIT_CORE_FAILED = 70
EXIT_STORAGE_IO = 74


class StorageIOFailed(Exception):
    """A persist raised ``OSError``: wraps it so the core loop can tell it apart."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line reason for an exception that ended the core loop."""
    if isinstance(exc, StorageIOFailed):
        err = exc.error
        what = os.strerror(err.errno) if err.errno else str(err)
        return EXIT_STORAGE_IO, (
            f"storage IO error on {err.filename or 'the data directory'}: [Errno "
            f"{err.errno}] {what}; what reached the disk is unknown, so the node stops "
            "(a failed write or fsync is never retried); check the disk, then restart it"
        )
    frames = traceback.extract_tb(exc.__traceback__)
    at = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return EXIT_CORE_FAILED, f"the core loop failed: {type(exc).__name__}: {exc}{at}"


def fail_stop(code: int, reason: str) -> NoReturn:
    """Log one line and end the process now: no cleanup that could write more."""
    log.critical("exiting with code %d: %s", code, reason)
    logging.shutdown()
    os._exit(code)
