"""Running an async unit test in its own event loop, with an overall bound."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import uvloop

P = ParamSpec("P")
TEST_BOUND_S = 4.0


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test in a fresh event loop, failing it after ``TEST_BOUND_S``."""
    return _on((asyncio.run,), fn)


def on_each_loop(
    fn: Callable[P, Coroutine[Any, Any, None]], fresh: Callable[[], None] | None = None
) -> Callable[P, None]:
    """``async_test``, once on the standard loop and once on uvloop: worker hosts run on
    uvloop when it is installed (``registry/node/event_loop.py``), the tests' default.
    ``fresh`` runs before each loop's run (module state bound to a loop, e.g. an Event)."""
    return _on((asyncio.run, uvloop.run), fn, fresh)


def _on(
    runners: tuple[Callable[[Coroutine[Any, Any, None]], None], ...],
    fn: Callable[P, Coroutine[Any, Any, None]],
    fresh: Callable[[], None] | None = None,
) -> Callable[P, None]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def main() -> None:
            async with asyncio.timeout(TEST_BOUND_S):
                await fn(*args, **kwargs)

        for runner in runners:
            if fresh is not None:
                fresh()
            runner(main())

    return run
