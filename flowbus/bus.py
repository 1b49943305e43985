"""The bus: already-built components, started in order and stopped in reverse.

The bus builds nothing: the composition root (``flowbus serve``, :mod:`flowbus.cli`) builds the
store, the backplane, the change feed, the auth engine, the registry, the dispatcher and the
transports, and hands them in. A bus may have no transports at all (a worker).
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

__all__ = ["Bus", "Component", "Endpoints", "StoreComponent", "Transport"]

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
        self.registry.freeze()
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


class Bus:
    """One bus: its components, started in the order given, then its transports.

    Args:
        store: the storage (opened first, closed last).
        backplane: where events go.
        registry: the applications' endpoints.
        dispatcher: routes calls to endpoints; its services are the ones endpoints get.
        components: started after the store and before the endpoints, in order (the change feed,
            the auth engine).
        transports: the ways in, by name (``"websocket"``, ``"http"``); none for a worker.
    """

    def __init__(
        self,
        *,
        store: Store,
        backplane: Backplane,
        registry: Registry,
        dispatcher: Dispatcher,
        components: Sequence[Component] = (),
        transports: Mapping[str, Transport] | None = None,
    ) -> None:
        self.store = store
        self.backplane = backplane
        self.registry = registry
        self.dispatcher = dispatcher
        self.components: list[Component] = [
            StoreComponent(store),
            *components,
            Endpoints(registry, dispatcher.services),
        ]
        self.transports: dict[str, Transport] = dict(transports or {})
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Start every component, then every transport.

        If one fails, what was started is stopped again in reverse order (the store's threads
        would otherwise keep the process alive), then the error is raised.
        """
        async with contextlib.AsyncExitStack() as stack:
            for component in self.components:
                logger.debug("starting %s", component.name)
                await component.start()
                stack.push_async_callback(self._stop_component, component)
            running: list[Transport] = []
            stack.push_async_callback(self._stop_transports, running)
            for transport in self.transports.values():
                await transport.start()
                running.append(transport)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        """Stop the transports (in-flight calls finish or answer UNAVAILABLE), then the components
        in reverse order: the endpoints, ..., the store last."""
        await self._stack.aclose()

    def url(self, transport: str) -> str:
        """The URL of the transport named ``transport``.

        Raises:
            KeyError: the bus has no such transport.
        """
        return self.transports[transport].url

    async def _stop_transports(self, running: list[Transport]) -> None:
        self.dispatcher.closing = True
        await asyncio.gather(*(transport.stop() for transport in running))

    @staticmethod
    async def _stop_component(component: Component) -> None:
        logger.debug("stopping %s", component.name)
        await component.stop()
