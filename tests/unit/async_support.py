"""Running an async unit test in its own event loop, with an overall bound."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

P = ParamSpec("P")
TEST_BOUND_S = 4.0


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test in a fresh event loop, failing it after ``TEST_BOUND_S``."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def main() -> None:
            async with asyncio.timeout(TEST_BOUND_S):
                await fn(*args, **kwargs)

        asyncio.run(main())

    return run
