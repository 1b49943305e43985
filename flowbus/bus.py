"""The bus: already-built components, started in order and stopped in reverse.

The bus builds nothing: the composition root (:mod:`flowbus.node`) builds every component (the
store, the change feed, the auth engine, the endpoints, the transports, admission) and hands
them in, in order. A bus may have no transports at all (a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from flowbus.backplane import Backplane
from flowbus.dispatcher import Dispatcher
from flowbus.endpoint import Services
from flowbus.registry import Registry
from flowbus.store.base import Store

__all__ = ["Admission", "Bus", "Component", "Endpoints", "StoreComponent", "Transport", "Transports"]

logger = logging.getLogger("flowbus.bus")


class Component(Protocol):
    """A part of the bus with a lifecycle: started once, then stopped once."""

    @property
    def name(self) -> str:
        """What logs call it."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Transport(Protocol):
    """A way in to the dispatcher (websockets, HTTP)."""

    @property
    def url(self) -> str:
        """Where clients reach it, with the real port."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones finish, close connections."""
        ...


class StoreComponent:
    """The store as a component: opened at start, closed at stop."""

    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def start(self) -> None:
        await self.store.open()

    async def stop(self) -> None:
        await self.store.close()


class Endpoints:
    """The registry's endpoints as one component: each started in order, then the applications'
    background work (:meth:`Application.run`); all stopped in reverse."""

    name = "endpoints"

    def __init__(self, registry: Registry, services: Services) -> None:
        self.registry = registry
        self.services = services
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            for entry in self.registry.entries():
                await entry.endpoint.startup(self.services)
                stack.push_async_callback(entry.endpoint.shutdown)
            for app in self.registry.apps.values():
                for work in app.background:
                    logger.debug("starting %s", work.name)
                    await work.start(self.services)
                    stack.push_async_callback(work.stop)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        await self._stack.aclose()


class Transports:
    """The ways in, as one component: started in turn, stopped together (each lets its calls in
    flight finish within the grace period, so that shutdown takes it once, not once per transport)."""

    name = "transports"

    def __init__(self, transports: Mapping[str, Transport]) -> None:
        self.transports = transports
        self._running: list[Transport] = []

    async def start(self) -> None:
        try:
            for transport in self.transports.values():
                await transport.start()
                self._running.append(transport)
        except BaseException:  # one cannot start (a port in use): the others stop again
            await self.stop()
            raise

    async def stop(self) -> None:
        running, self._running = self._running, []
        await asyncio.gather(*(transport.stop() for transport in running))


class Admission:
    """The dispatcher's admission of calls, as the last component: left first when the bus stops,
    so that every call made from then on is refused UNAVAILABLE while the transports let the
    calls in flight finish."""

    name = "admission"

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def start(self) -> None:
        self.dispatcher.open()

    async def stop(self) -> None:
        self.dispatcher.close()


class Bus:
    """One bus: its components, entered in the order the composition root gives and left in
    reverse (:mod:`flowbus.node`).

    Args:
        store: the storage.
        backplane: where events go.
        registry: the applications' endpoints.
        dispatcher: routes calls to endpoints; its services are the ones endpoints get.
        resources: every component, in the order they start.
        transports: the ways in, by name (``"websocket"``, ``"http"``), for :meth:`url`.
    """

    def __init__(
        self,
        *,
        store: Store,
        backplane: Backplane,
        registry: Registry,
        dispatcher: Dispatcher,
        resources: Sequence[Component],
        transports: Mapping[str, Transport] | None = None,
    ) -> None:
        self.store = store
        self.backplane = backplane
        self.registry = registry
        self.dispatcher = dispatcher
        self.components = list(resources)
        self.transports: dict[str, Transport] = dict(transports or {})
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Start every component in order.

        If one fails, what was started is stopped again in reverse order (the store's threads
        would otherwise keep the process alive), then the error is raised.
        """
        async with contextlib.AsyncExitStack() as stack:
            for component in self.components:
                logger.debug("starting %s", component.name)
                await component.start()
                stack.push_async_callback(self._stop_component, component)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        """Stop the components in reverse order: admission first (new calls are refused), then
        the transports (in-flight calls finish or answer UNAVAILABLE), ..., the store last."""
        await self._stack.aclose()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, transport: str) -> str:
        """The URL of the transport named ``transport``.

        Raises:
            KeyError: the bus has no such transport.
        """
        return self.transports[transport].url

    @staticmethod
    async def _stop_component(component: Component) -> None:
        logger.debug("stopping %s", component.name)
        await component.stop()
