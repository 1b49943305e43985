"""The Backplane seam: how change events leave the process that made them.

The first implementation is in-process: listeners registered here get every event. A clustered
implementation later carries the same events between server processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Backplane", "Event", "Listener", "LocalBackplane"]

logger = logging.getLogger("flowbus.backplane")


@dataclass(slots=True, frozen=True)
class Event:
    """A change on an endpoint: CREATED, UPDATED, DELETED or an endpoint-specific kind."""

    event: str
    endpoint: str
    objectid: str
    namespace: str
    data: Any = None


Listener = Callable[[Event], None]


class Backplane(Protocol):
    """Publishes events to whoever listens, here or in other processes."""

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every listener; never blocks and never raises."""
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Register a listener; returns a function that removes it."""
        ...


class LocalBackplane:
    """Delivers events to listeners in this process, synchronously."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.error("event listener failed", exc_info=True)

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)
