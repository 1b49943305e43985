"""Running calls without a task until they wait (flowbus.eager) and the one-timer deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowbus import eager
from flowbus.deadlines import Deadlines


def start(coro: Any) -> asyncio.Task[Any] | None:
    """What Session.start does: step the call once inline; hand it to a task if it paused."""
    paused = eager.start(coro)
    if not isinstance(paused, eager.Paused):
        return None
    return asyncio.get_running_loop().create_task(eager.resume(paused))


async def test_a_call_that_never_waits_needs_no_task() -> None:
    done: list[str] = []

    async def call() -> None:
        done.append("yes")

    assert start(call()) is None
    assert done == ["yes"]


async def test_a_paused_call_gets_results_exceptions_and_bare_yields() -> None:
    """Awaited results and exceptions reach the call exactly as they would in a task of its own."""
    loop = asyncio.get_running_loop()
    value: asyncio.Future[int] = loop.create_future()
    failing: asyncio.Future[int] = loop.create_future()
    seen: list[Any] = []

    async def call() -> None:
        seen.append(await value)
        await asyncio.sleep(0)
        try:
            await failing
        except KeyError as exc:
            seen.append(exc.args[0])
        seen.append(asyncio.current_task())

    task = start(call())
    assert task is not None
    value.set_result(7)
    await asyncio.sleep(0)
    failing.set_exception(KeyError("k"))
    await task
    assert seen == [7, "k", task]


async def test_cancelling_the_task_cancels_the_call_where_it_waits() -> None:
    """Cancellation is thrown into the call at its await; a call that handles it goes on."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    later: asyncio.Future[str] = loop.create_future()
    seen: list[str] = []

    async def call() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        seen.append(await later)

    task = start(call())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    later.set_result("went on")
    await task
    assert seen == ["cancelled", "went on"]


async def test_a_call_that_lets_cancellation_through_ends_cancelled() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def call() -> None:
        await never

    task = start(call())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadlines_cancel_only_late_calls() -> None:
    """A call past its deadline is cancelled and reported expired; one that ends in time is not."""
    deadlines = Deadlines(0.05)
    outcome: dict[str, str] = {}

    async def call(name: str, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        deadlines.watch(task)
        try:
            await asyncio.sleep(seconds)
            outcome[name] = "finished"
        except asyncio.CancelledError:
            outcome[name] = "timed out" if deadlines.expired(task) else "cancelled"
        finally:
            deadlines.leave(task)

    await asyncio.gather(call("quick", 0), call("slow", 30))
    assert outcome == {"quick": "finished", "slow": "timed out"}


async def test_deadlines_leave_a_call_that_swallowed_its_timeout_uncancelled() -> None:
    deadlines = Deadlines(0.05)

    async def call() -> int:
        task = asyncio.current_task()
        assert task is not None
        deadlines.watch(task)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # an endpoint that ignores cancellation
        deadlines.leave(task)
        return task.cancelling()

    assert await call() == 0


async def test_start_returns_the_value_of_a_call_that_never_waits() -> None:
    async def call() -> int:
        return 42

    assert eager.start(call()) == 42


async def test_resume_returns_the_value_of_a_paused_call() -> None:
    """What Dispatcher.handle does for an HTTP call: the rest of the call runs in the awaiting task."""
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def call() -> int:
        return await gate + 1

    paused = eager.start(call())
    assert isinstance(paused, eager.Paused)
    asyncio.get_running_loop().call_soon(gate.set_result, 41)
    assert await eager.resume(paused) == 42
