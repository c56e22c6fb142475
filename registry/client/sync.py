"""``SyncClient``: the blocking SDK, a thin wrapper over ``Client``.

It runs one ``Client`` on a private event loop in a daemon thread and waits for each
operation's result; every rule (routing, cache, retries, at most once) is the async
client's. It is safe to use from several threads at once. Do not call it from inside
that private loop (e.g. from a worker's hook): use ``Client`` there.

Processes: a client belongs to the process that made it. After ``os.fork()`` (gunicorn
``--preload``, ``multiprocessing`` with the ``fork`` start method) its thread is gone and
gRPC is unusable in the child, so every method raises ``ClientForked`` at once instead of
hanging. Create clients in each worker process after the fork (gunicorn's ``post_fork``
hook, or no ``--preload``), or use the ``spawn`` start method; ``close()`` in the child
only marks it closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Sequence
from random import Random
from types import TracebackType
from typing import Any, TypeVar

from registry.client.aio import DEFAULT_TIMEOUT_S, Client, ClientStats
from registry.client.errors import RegistryError
from registry.client.retry import Backoff
from registry.client.tls import Tls
from registry.client.types import ClusterStatus, Location, Priority, Registration, WatchEvent

__all__ = ["ClientForked", "SyncClient"]

T = TypeVar("T")
CLOSE_TIMEOUT_S = 10.0
"""How long ``close()`` waits for the async client to shut down, seconds."""


class ClientForked(RegistryError, RuntimeError):
    """A ``SyncClient`` was used in a process forked from the one that created it."""


class SyncClient:
    """The blocking client: the same methods as ``Client``, without ``await``.

    ::

        with SyncClient("127.0.0.1:7400") as client:
            client.register("visits", "counter")
            print(client.call("visits", b"incr"))

    Arguments are those of ``Client``. ``close()`` (or ``with``) stops its thread and is
    safe to call twice.
    """

    def __init__(
        self,
        seeds: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        cache: bool = True,
        backoff: Backoff | None = None,
        rng: Random | None = None,
        channel_options: Sequence[tuple[str, int | str]] = (),
        tls: Tls | None = None,
        token: str | None = None,
        tracer_provider: Any | None = None,
        coalesce_writes: bool = True,
    ) -> None:
        self._client = Client(
            seeds,
            timeout=timeout,
            cache=cache,
            backoff=backoff,
            rng=rng,
            channel_options=channel_options,
            tls=tls,
            token=token,
            tracer_provider=tracer_provider,
            coalesce_writes=coalesce_writes,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="registry-sync-client", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if os.getpid() != self._pid:
            coro.close()
            raise ClientForked(
                f"this SyncClient was created in process {self._pid} and cannot be used in "
                f"process {os.getpid()}, forked from it (its thread and gRPC channels stay "
                "behind); create a client after the fork (gunicorn: post_fork, or no "
                "--preload; multiprocessing: the spawn start method)"
            )
        if self._closed:
            coro.close()
            raise RuntimeError("the client is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncClient called from its own event loop; use Client there")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the operation too
            raise

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> SyncClient:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self, timeout: float | None = None) -> ClusterStatus:
        """See ``Client.connect``."""
        return self._run(self._client.connect(timeout))

    def close(self) -> None:
        """Close the client and stop its thread; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._pid:
            return  # a forked child: the thread and the channels are the parent's
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), loop).result(CLOSE_TIMEOUT_S)
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(
                CLOSE_TIMEOUT_S
            )
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)
            if not self._thread.is_alive():
                loop.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    @property
    def stats(self) -> ClientStats:
        """See ``Client.stats``."""
        return self._client.stats

    @property
    def cache_synced(self) -> bool:
        """See ``Client.cache_synced``."""
        return self._client.cache_synced

    def cached(self, name: str) -> Location | None:
        """See ``Client.cached``."""
        return self._client.cached(name)

    # -- the operations (see ``Client`` for each) --------------------------------------

    def register(
        self,
        name: str,
        kind: str,
        args: bytes = b"",
        roles: Sequence[str] = (),
        priority: Priority | None = None,
        *,
        timeout: float | None = None,
        restart: str | None = None,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        lazy: bool = False,
        idle_after: float = 0.0,
    ) -> int:
        """See ``Client.register``."""
        return self._run(
            self._client.register(
                name,
                kind,
                args,
                roles,
                priority,
                timeout=timeout,
                restart=restart,
                max_restarts=max_restarts,
                restart_window=restart_window,
                lazy=lazy,
                idle_after=idle_after,
            )
        )

    def register_many(
        self, registrations: Iterable[Registration], *, timeout: float | None = None
    ) -> int:
        """See ``Client.register_many``."""
        return self._run(self._client.register_many(list(registrations), timeout=timeout))

    def unregister(self, name: str, *, timeout: float | None = None) -> int:
        """See ``Client.unregister``."""
        return self._run(self._client.unregister(name, timeout=timeout))

    def join(self, group: str, name: str, *, timeout: float | None = None) -> int:
        """See ``Client.join``."""
        return self._run(self._client.join(group, name, timeout=timeout))

    def leave(self, group: str, name: str, *, timeout: float | None = None) -> int:
        """See ``Client.leave``."""
        return self._run(self._client.leave(group, name, timeout=timeout))

    def whereis(
        self, name: str, consistent: bool = False, *, timeout: float | None = None
    ) -> Location | None:
        """See ``Client.whereis``."""
        return self._run(self._client.whereis(name, consistent, timeout=timeout))

    def whereis_or_register(
        self,
        name: str,
        kind: str,
        args: bytes = b"",
        roles: Sequence[str] = (),
        priority: Priority | None = None,
        *,
        timeout: float | None = None,
    ) -> Location:
        """See ``Client.whereis_or_register``."""
        return self._run(
            self._client.whereis_or_register(name, kind, args, roles, priority, timeout=timeout)
        )

    def members(self, group: str, *, timeout: float | None = None) -> list[str]:
        """See ``Client.members``."""
        return self._run(self._client.members(group, timeout=timeout))

    def list_names(
        self, prefix: str = "", *, limit: int = 1000, timeout: float | None = None
    ) -> tuple[list[Location], bool]:
        """See ``Client.list_names``."""
        return self._run(self._client.list_names(prefix, limit=limit, timeout=timeout))

    def cluster(self, *, timeout: float | None = None) -> ClusterStatus:
        """See ``Client.cluster``."""
        return self._run(self._client.cluster(timeout=timeout))

    def call(
        self, name: str, payload: bytes, timeout: float | None = None, *, idempotent: bool = False
    ) -> bytes:
        """See ``Client.call`` (at most once unless ``idempotent=True``)."""
        return self._run(self._client.call(name, payload, timeout, idempotent=idempotent))

    def cast(
        self, name: str, payload: bytes, timeout: float | None = None, *, idempotent: bool = False
    ) -> None:
        """See ``Client.cast``."""
        self._run(self._client.cast(name, payload, timeout, idempotent=idempotent))

    def publish(self, group: str, payload: bytes, *, timeout: float | None = None) -> int:
        """See ``Client.publish``."""
        return self._run(self._client.publish(group, payload, timeout=timeout))

    def multi_call(
        self, group: str, payload: bytes, timeout: float | None = None
    ) -> dict[str, bytes | RegistryError]:
        """See ``Client.multi_call``."""
        return self._run(self._client.multi_call(group, payload, timeout))

    def watch(self, prefix: str = "") -> Generator[WatchEvent, None, None]:
        """See ``Client.watch``; a blocking iterator (close it, or ``break``, to stop)."""
        stream = self._client.watch(prefix)
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(stream.aclose())


async def _next(stream: AsyncIterator[T]) -> T:
    return await anext(stream)
