"""What a power cut may leave of one directory under POSIX's strict rules, recorded from
the calls ``registry.node.storage`` makes.

LazyFS models lost file *data* only: it passes creates, renames and unlinks straight to
the disk below, so a missing directory fsync is invisible to it (and ext4, xfs and btrfs
happen to persist a new file's name when the file is fsynced, so a real disk would not
show it either). POSIX promises neither: a name is durable only once its directory is
fsynced, a file's bytes only once the file is. ``StrictDir`` records the storage
module's ``os.open``/``replace``/``rename``/``unlink``/``fsync``/``fdatasync`` and
``Path.unlink`` (passing every call through) and ``crash_copy()`` writes what a power
cut right now may leave:

- the names as of the directory's last fsync (later creates, renames and unlinks undone),
- each file's bytes as of its own last fsync (a rename carries the file, synced or not).

Only one directory (the data directory) is modelled; calls on other paths pass through.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.node import storage as storage_module


class StrictDir:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self._names: dict[str, int] = {}
        """The directory as it is now: name → inode (a number of our own)."""
        self._durable_names: dict[str, int] = {}
        """The directory as of its last fsync."""
        self._durable_bytes: dict[int, bytes] = {}
        """Each inode's bytes as of its last fsync."""
        self._fds: dict[int, int | None] = {}
        """Open descriptor → inode (None: the directory itself)."""
        self._inodes = itertools.count(1)
        self.after_sync: Callable[[], None] | None = None
        """Called after every recorded fsync: a power cut may come at that point."""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Route the storage module's file-system calls through this recorder."""
        monkeypatch.setattr(storage_module, "os", _OsProxy(self))
        monkeypatch.setattr(storage_module, "_datasync", self.fsync)
        unlink = Path.unlink

        def recorded_unlink(path: Path, missing_ok: bool = False) -> None:
            unlink(path, missing_ok=missing_ok)
            self._unlinked(path)

        monkeypatch.setattr(Path, "unlink", recorded_unlink)

    # -- the recorded calls --------------------------------------------------------------

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        target = Path(path).resolve()
        fd = os.open(path, flags, mode)
        if target == self.dir:
            self._fds[fd] = None
        elif target.parent == self.dir:
            if target.name not in self._names:
                self._names[target.name] = next(self._inodes)
            self._fds[fd] = self._names[target.name]
        return fd

    def close(self, fd: int) -> None:
        os.close(fd)
        self._fds.pop(fd, None)

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)
        source, target = Path(src).resolve(), Path(dst).resolve()
        if source.parent == self.dir and target.parent == self.dir:
            self._names[target.name] = self._names.pop(source.name)

    def unlink(self, path: Any) -> None:
        os.unlink(path)
        self._unlinked(Path(path))

    def _unlinked(self, path: Path) -> None:
        if path.resolve().parent == self.dir:
            self._names.pop(path.name, None)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        if fd not in self._fds:
            return
        inode = self._fds[fd]
        if inode is None:
            self._durable_names = dict(self._names)
        else:
            name = next(n for n, i in self._names.items() if i == inode)
            self._durable_bytes[inode] = (self.dir / name).read_bytes()
        if self.after_sync is not None:
            self.after_sync()

    # -- the crash -----------------------------------------------------------------------

    def crash_copy(self, into: Path) -> Path:
        """Write what a power cut now may leave into the new directory ``into``."""
        into.mkdir(parents=True)
        for name, inode in self._durable_names.items():
            (into / name).write_bytes(self._durable_bytes.get(inode, b""))
        return into


class _OsProxy:
    """The ``os`` module, with the calls ``StrictDir`` records routed through it."""

    def __init__(self, recorder: StrictDir) -> None:
        self.open = recorder.open
        self.close = recorder.close
        self.replace = self.rename = recorder.replace
        self.unlink = self.remove = recorder.unlink
        self.fsync = self.fdatasync = recorder.fsync

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)
