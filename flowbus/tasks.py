"""How the bus's event loop makes tasks: eagerly where Python can (3.12+).

Every call that is not answered at parse time runs in a task of its own. An eager task runs
synchronously until it first waits, so a call that never waits (an OPEN of a cached object, a
refusal) costs no turn of the event loop; on Python 3.11 tasks are plain.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["eager_tasks", "use_eager_tasks"]

T = TypeVar("T")


def use_eager_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` start its tasks eagerly on Python 3.12+ (a no-op on 3.11)."""
    if sys.version_info >= (3, 12):
        loop.set_task_factory(asyncio.eager_task_factory)


async def eager_tasks(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the running loop after :func:`use_eager_tasks` (for ``asyncio.run``)."""
    use_eager_tasks(asyncio.get_running_loop())
    return await main
