"""The event loop a node's processes run on: uvloop when installed, else asyncio's.

Both the control process and its worker hosts use ``run_loop``. ``REGISTRY_EVENT_LOOP=
asyncio`` forces the standard loop in both (the hosts inherit the environment).

- Control process: at c=64 registrations uvloop took ~10 % off the CPU per write
  (leader and followers, three A/B pairs).
- Worker hosts: calls side by side with the raw echo (two alternating A/B pairs, 5 long
  rounds each) went from 0.70, 0.64× to 0.87, 0.78× at c=1 and from 0.65, 0.75× to
  0.85, 0.77× at c=64.

Nothing in a node depends on which loop runs it; activation rule 8 (``worker/eager.py``)
is tested on both.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

EVENT_LOOP_ENV = "REGISTRY_EVENT_LOOP"


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to the end on uvloop when it is installed (the ``fast`` extra) and
    ``REGISTRY_EVENT_LOOP`` is not ``asyncio``; else on the standard loop."""
    if os.environ.get(EVENT_LOOP_ENV, "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    import asyncio

    asyncio.run(main)
