"""LazyFS mounts for power-loss tests: unsynced bytes live in LazyFS's cache until fsync.

LazyFS (github.com/dsrhaslab/lazyfs, the FUSE file system Jepsen uses) shows ``backing``
at ``mount`` through a page cache of its own: a write stays in that cache until the
writer fsyncs it, and ``clear_cache()`` drops every unsynced byte — what a power failure
does. A *power loss* of a process whose files live on the mount is then: SIGSTOP it (it
must not write after the cut), ``clear_cache()``, SIGKILL it, start it again.

Torn writes (``TornWrite``) are LazyFS's ``torn-op`` fault, given in the mount's config
(the fault FIFO reads commands in 100-byte chunks, too short for a data directory's
path): on the ``occurrence``-th write to one file, only the chosen parts of that write
reach ``backing`` and LazyFS kills itself, so nothing else unsynced survives either — a
power cut in the middle of a write. The mount is then dead; ``restart()`` mounts again.

Rules it keeps:

- Needs root, ``/dev/fuse``, ``fusermount3`` and a LazyFS binary (``tools/lazyfs/build.sh``
  of the shared tools builds one); ``missing_requirements()`` says what is missing.
- ``start()`` returns only once ``mount`` is a mount point (LazyFS pre-allocates its
  cache first); every wait is bounded.
- ``close()`` always unmounts (``fusermount3 -u``, lazily if busy) and stops the LazyFS
  process; it is safe to call twice, and an ``atexit`` hook calls it for a caller that
  never got to it. LazyFS does not model directory entries: creates,
  renames and unlinks reach ``backing`` at once, so a missing directory fsync is
  invisible to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LazyFS", "LazyFSError", "TornWrite", "missing_requirements"]

CACHE_SIZE = "64mb"
"""LazyFS's cache (pre-allocated at mount). A test writes a few MB per node."""


_mounted: set[LazyFS] = set()


@atexit.register
def _unmount_leftovers() -> None:  # pragma: no cover - only when a caller forgot close()
    for fs in list(_mounted):
        fs.close()


class LazyFSError(RuntimeError):
    """LazyFS did not mount, or did not answer a command in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TornWrite:
    """LazyFS ``torn-op``: split the ``occurrence``-th write to ``file`` (a path under the
    mount) into ``parts`` equal parts, persist only those in ``persist`` (1-based), and
    crash LazyFS right after."""

    file: Path
    occurrence: int
    parts: int = 2
    persist: tuple[int, ...] = (1,)


def missing_requirements(binary: Path | None) -> str | None:
    """Why LazyFS cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (FUSE mounts)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "needs fusermount3 (Debian: apt-get install fuse3)"
    if binary is None or not os.access(binary, os.X_OK):
        return f"needs a LazyFS binary (got {binary})"
    return None


class LazyFS:
    """One LazyFS mount; see the module docstring."""

    def __init__(self, binary: Path, mount: Path, backing: Path, work: Path) -> None:
        self.binary = binary
        self.mount = mount
        self.backing = backing.resolve()
        self.work = work
        self.log_path = work / "lazyfs.log"
        self._fifo = work / "faults.fifo"
        self._done_fifo = work / "done.fifo"
        self._proc: subprocess.Popen[bytes] | None = None
        self._done: int | None = None

    def __enter__(self) -> LazyFS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, torn: TornWrite | None = None, timeout: float = 20.0) -> None:
        """Mount, with ``torn`` armed if given; returns once ``mount`` is a mount point."""
        assert self._proc is None, "already started"
        _mounted.add(self)
        for path in (self.mount, self.backing, self.work):
            path.mkdir(parents=True, exist_ok=True)
        config = self.work / "lazyfs.toml"
        config.write_text(self._config(torn), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    str(self.mount),
                    # Relative, run from ``work``: LazyFS ignores a config path that
                    # contains "-o" anywhere (as /tmp/pytest-of-root/... does).
                    "--config-path",
                    config.name,
                    "-o",
                    "allow_other",
                    "-o",
                    "modules=subdir",
                    "-o",
                    f"subdir={self.backing}",
                    "-f",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.work,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not (os.path.ismount(self.mount) and self._done_fifo.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise LazyFSError(f"LazyFS did not mount {self.mount}:\n{self.log_tail()}")
            time.sleep(0.02)
        # LazyFS opens the completion FIFO for writing once mounted and blocks until a
        # reader is there; keep a non-blocking reader open for the mount's life.
        self._done = os.open(self._done_fifo, os.O_RDONLY | os.O_NONBLOCK)

    def _config(self, torn: TornWrite | None) -> str:
        text = (
            f'[faults]\nfifo_path="{self._fifo}"\nfifo_path_completed="{self._done_fifo}"\n'
            f'[cache]\napply_eviction=false\n[cache.simple]\ncustom_size="{CACHE_SIZE}"\n'
            'blocks_per_page=1\n[filesystem]\nlog_all_operations=false\nlogfile=""\n'
        )
        if torn is not None:
            # LazyFS sees paths under the backing directory (the subdir module).
            target = self.backing / torn.file.resolve().relative_to(self.mount.resolve())
            text += (
                f'[[injection]]\ntype="torn-op"\nfile="{target}"\n'
                f"occurrence={torn.occurrence}\nparts={torn.parts}\n"
                f"persist=[{', '.join(map(str, torn.persist))}]\n"
            )
        return text

    def clear_cache(self, timeout: float = 10.0) -> None:
        """Drop every byte not yet fsynced (a power failure); returns once LazyFS says it
        is done. Stop the processes writing here first."""
        assert self._done is not None and self.alive, "LazyFS is not running"
        with contextlib.suppress(BlockingIOError):
            os.read(self._done, 4096)  # nothing stale may pass for this command's answer
        fd = os.open(self._fifo, os.O_WRONLY)
        try:
            os.write(fd, b"lazyfs::clear-cache\n")
        finally:
            os.close(fd)
        deadline = time.monotonic() + timeout
        answer = b""
        while b"finished::clear-cache" not in answer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive:
                raise LazyFSError(f"LazyFS did not clear its cache:\n{self.log_tail()}")
            ready, _, _ = select.select([self._done], [], [], min(left, 0.2))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    answer += os.read(self._done, 4096)

    def wait_crashed(self, timeout: float) -> None:
        """Wait until LazyFS killed itself (after a torn write fired)."""
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LazyFSError(f"the torn write never fired:\n{self.log_tail()}") from None

    def restart(self, torn: TornWrite | None = None) -> None:
        """Unmount (the mount may be dead after a crash) and mount again."""
        self.close()
        self.start(torn)

    def close(self) -> None:
        """Unmount and stop LazyFS; safe to call twice."""
        if os.path.ismount(self.mount) or self._proc is not None:
            result = subprocess.run(
                ["fusermount3", "-u", str(self.mount)], capture_output=True, check=False
            )
            if result.returncode != 0 and os.path.ismount(self.mount):
                # Busy (a process still holds a file) or dead (LazyFS crashed): detach it.
                subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], check=False)
        if self._proc is not None:
            try:
                self._proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10.0)
            self._proc = None
        if self._done is not None:
            os.close(self._done)
            self._done = None
        _mounted.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no LazyFS log)"
        return "\n".join(text.splitlines()[-lines:])
