"""A hook's first step run at once, as a step of another task that is waiting.

An idle activation's task waits on its mailbox. Handing it a call costs two event-loop
turns (the task wakes on the next one; the caller, on the one after), which a worker
host pays on every call and a bare gRPC echo never does. Python 3.12's eager tasks
(``eager_start``) would start the hook at once; 3.11 has none, so this module does what
they do for one step.

Rules
-----
1. ``first_step(hook, arg, task, context)`` calls ``hook(arg)`` (it returns a
   coroutine) and runs that coroutine up to its first suspension, with
   ``task`` as the current task (``asyncio.current_task()``, what ``asyncio.timeout`` and
   ``TaskGroup`` attach to) and inside ``context`` (the task's ``contextvars``). The
   caller's own task is current again afterwards, whatever happened. ``task`` must be
   waiting (not running): a task runs one step at a time, and this is one of its steps.
2. It returns ``Done(value)``, ``Raised(exc)`` (any exception but ``KeyboardInterrupt``
   and ``SystemExit``, which propagate as they would from a task; a hook that returns no
   coroutine is the ``TypeError`` that awaiting it would raise), or
   ``Suspended(coro, yielded)``: the coroutine and what it awaits.
3. ``CarryOn(coro, yielded)`` carries a suspended coroutine on, awaited by ``task`` itself:
   it hands ``yielded`` to the task as the coroutine would have (so the task waits on the
   same future, and a cancel of the task cancels it), then goes on stepping the
   coroutine. ``CarryOn(coro, yielded, error)`` first throws ``error`` into it: a cancel
   that reached the task before it could carry the coroutine on was meant for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# and a host builds a ``Done`` on every call it answers at once.
@dataclass(slots=True)
class Done:
    value: object


@dataclass(slots=True)
class Raised:
    error: BaseException


@dataclass(slots=True)
class Suspended:
    coro: Coroutine[Any, Any, object]
    yielded: object
    """What the coroutine yielded: the future it awaits, or ``None`` (a bare yield)."""


Step = Done | Raised | Suspended


def first_step(
    hook: Callable[[Any], object],
    arg: object,
    task: asyncio.Task[Any],
    context: contextvars.Context,
) -> Step:
    """Start ``hook(arg)`` and run it up to its first suspension as a step of ``task``
    (rules 1 and 2)."""
    loop = task.get_loop()
    outer = asyncio.current_task(loop)
    if outer is not None:
        _leave_task(loop, outer)
    _enter_task(loop, task)
    started: list[Coroutine[Any, Any, object]] = []
    try:
        yielded = context.run(_start, hook, arg, started)
    except StopIteration as done:
        return Done(done.value)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return Raised(exc)
    finally:
        _leave_task(loop, task)
        if outer is not None:
            _enter_task(loop, outer)
    return Suspended(started[0], yielded)


def _start(
    hook: Callable[[Any], object], arg: object, started: list[Coroutine[Any, Any, object]]
) -> object:
    coro = hook(arg)
    # The exact type first: an ABC isinstance check costs a host microseconds per call.
    if type(coro) is not types.CoroutineType and not isinstance(coro, Coroutine):
        raise TypeError(f"object {type(coro).__name__} can't be used in 'await' expression")
    started.append(coro)
    return coro.send(None)


class CarryOn:
    """Await to carry on a coroutine that ``first_step`` suspended (rule 3)."""

    __slots__ = ("_coro", "_error", "_yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, object],
        yielded: object,
        error: BaseException | None = None,
    ) -> None:
        self._coro = coro
        self._yielded = yielded
        self._error = error

    def __await__(self) -> Generator[Any, None, object]:
        coro, yielded, error = self._coro, self._yielded, self._error
        while True:
            if error is None:
                try:
                    yield yielded  # the task waits on it, as if the coroutine had yielded it
                except BaseException as exc:  # thrown into the task: meant for the hook
                    error = exc
            try:
                if error is None:
                    yielded = coro.send(None)
                else:
                    thrown, error = error, None
                    yielded = coro.throw(thrown)
            except StopIteration as done:
                return done.value
