"""Run a call inline until it first has to wait: most calls never do.

Python 3.11 has no eager tasks. :func:`start` steps a call's coroutine by hand: if it finishes
without waiting (an OPEN served from the cache, a refused call), the caller has its answer with
no task, timer or deadline to set up. If it pauses, :func:`resume` drives the rest of it, in
whatever task awaits ``resume`` (a new task for a websocket message, the request's own task
for an HTTP call), exactly as awaiting the coroutine would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Paused", "resume", "start"]

T = TypeVar("T")


class Paused:
    """A call that had to wait: its coroutine, and what it waits on."""

    __slots__ = ("call", "waiting_on")

    def __init__(self, call: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.call = call
        self.waiting_on = waiting_on


def start(call: Coroutine[Any, Any, T]) -> T | Paused:
    """Step ``call`` until it ends (return its value) or first waits (return :class:`Paused`).

    What ``call`` raises is raised here. A call that may legitimately answer a Paused instance
    must not be started this way.
    """
    try:
        waiting_on = call.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return Paused(call, waiting_on)


async def resume(paused: Paused) -> Any:
    """Drive a paused call to its end and return its value (or raise what it raises).

    Each time it pauses, wait here for what it waits on, then step it on: with ``send(None)``
    when that thing ended (the call reads the outcome from it itself), or by throwing in the
    cancellation this task got while waiting.
    """
    call, waiting_on = paused.call, paused.waiting_on
    while True:
        error: BaseException | None = None
        try:
            if waiting_on is None:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            else:
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:  # noqa: B036 - handed on to the call, which decides
            error = exc
        try:
            if error is None or _outcome_of(waiting_on, error):
                waiting_on = call.send(None)
            else:
                waiting_on = call.throw(error)
        except StopIteration as done:
            return done.value


def _outcome_of(future: Any, error: BaseException) -> bool:
    """Whether ``error`` is just how ``future`` ended (the paused call will read it from there)."""
    if future is None or not future.done():
        return False
    if future.cancelled():
        return isinstance(error, asyncio.CancelledError)
    return future.exception() is error
