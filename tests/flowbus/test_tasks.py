"""The bus's task factory: eager where Python has it."""

from __future__ import annotations

import asyncio
import sys

from flowbus.tasks import use_eager_tasks


async def test_tasks_are_eager_where_python_has_them() -> None:
    """On 3.12+ a task started on the bus's loop runs up to its first await at once; on 3.11 it waits its turn."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []

    async def call() -> None:
        ran.append("started")

    use_eager_tasks(loop)
    try:
        task = loop.create_task(call())
        assert ran == (["started"] if sys.version_info >= (3, 12) else [])
        await task
        assert ran == ["started"]
    finally:
        loop.set_task_factory(None)
