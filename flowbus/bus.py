"""The bus: store, registry, dispatcher and transports, started and stopped in the right order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from flowbus.auth.base import AllowAll, Authenticator, Authorizer, OpenAuthenticator
from flowbus.backplane import Backplane, LocalBackplane
from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.endpoint import Application, Endpoint, Services
from flowbus.handshake import Connections
from flowbus.registry import Registry
from flowbus.server import WebSocketServer
from flowbus.store.base import Store
from flowbus.store.cache import CachedStore
from flowbus.store.sqlite import SQLiteStore

__all__ = ["Bus", "Transport"]

logger = logging.getLogger("flowbus.bus")


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


class Bus:
    """One served bus.

    Args:
        settings: the configuration.
        apps: the applications to serve.
        authenticator, authorizer: the auth seam; by default everyone may do everything.
        store: the storage; by default SQLite in ``settings.data``.
        backplane: where events go; by default this process only.
    """

    def __init__(
        self,
        settings: Settings,
        apps: Iterable[Application],
        *,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        store: Store | None = None,
        backplane: Backplane | None = None,
    ) -> None:
        self.settings = settings
        self.store: Store = store or CachedStore(
            SQLiteStore(settings.database, synchronous=settings.sync), settings.cache_bytes
        )
        self.registry = Registry(apps)
        self.backplane: Backplane = backplane or LocalBackplane()
        self.services = Services(self.store, self.backplane, settings, self.registry.describe)
        self.dispatcher = Dispatcher(
            self.registry,
            self.services,
            authenticator or OpenAuthenticator(),
            authorizer or AllowAll(),
            call_timeout=settings.call_timeout,
        )
        self.connections = Connections(settings.max_connections)  # one cap for every websocket entry
        self.websocket = WebSocketServer(self.dispatcher, settings, self.connections)
        self.transports: list[Transport] = [self.websocket]

    async def start(self) -> None:
        """Open the store, start every endpoint, then every transport.

        If a step fails, what was started is stopped again and the store closed (its threads
        would otherwise keep the process alive), then the error is raised.
        """
        await self.store.open()
        self.registry.freeze()
        started: list[Endpoint] = []
        running: list[Transport] = []
        try:
            for entry in self.registry.entries():
                await entry.endpoint.startup(self.services)
                started.append(entry.endpoint)
            for transport in self.transports:
                await transport.start()
                running.append(transport)
        except BaseException:
            self.dispatcher.closing = True
            await asyncio.gather(*(transport.stop() for transport in running), return_exceptions=True)
            for endpoint in reversed(started):
                try:
                    await endpoint.shutdown()
                except Exception:
                    logger.error("endpoint %s failed to shut down", endpoint.name, exc_info=True)
            await self.store.close()
            raise

    async def stop(self) -> None:
        """Stop the transports (in-flight calls finish or answer UNAVAILABLE), then the endpoints,
        then close the store."""
        self.dispatcher.closing = True
        await asyncio.gather(*(transport.stop() for transport in self.transports))
        for entry in self.registry.entries():
            await entry.endpoint.shutdown()
        await self.store.close()
