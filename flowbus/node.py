"""The composition root: the one place that builds a bus from its parts and runs it.

``flowbus serve`` is :func:`serve`: settings → the store (SQLite, or PostgreSQL for a
``postgresql://`` store; behind the read cache) → the backplane → the change feed → the change
log's retention → the auth engine → the registry (frozen) → the dispatcher → the applications'
endpoints → the transports → admission. :class:`~flowbus.bus.Bus` enters each in that order and
leaves them in reverse: admission closes first (new calls are refused UNAVAILABLE), then the
transports let their calls finish, then the endpoints, ..., the store last. Nothing is wired by
changing an attribute after it was built.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowbus.auth.base import AllowAll, Authenticator, Authorizer, Identity, OpenAuthenticator
from flowbus.auth.engine import AuthEngine
from flowbus.auth.throttle import LoginThrottle
from flowbus.auth.tokens import TokenIssuer, load_secret
from flowbus.backplane import Backplane, LocalBackplane
from flowbus.bus import Admission, Bus, Component, Endpoints, StoreComponent, Transport, Transports
from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.endpoint import Application
from flowbus.errors import FlowBusError
from flowbus.feed import ChangeFeed, Retention, applier
from flowbus.handshake import Connections
from flowbus.registry import Registry
from flowbus.server import WebSocketServer
from flowbus.store import Store, create_store
from flowbus.tasks import eager_tasks

__all__ = ["READY", "auth_engine", "build_bus", "load_app", "serve"]

READY = "FlowBus ready"


def serve(settings: Settings) -> int:
    """Run a bus on ``settings`` until SIGINT or SIGTERM; the exit status.

    2 when an application cannot be loaded, 1 when the bus cannot start.
    """
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_libraries(debug=settings.log_level.lower() == "debug")
    try:
        apps = _apps(settings)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"flowbus: {exc}", file=sys.stderr)
        return 2
    status: int = _run(_serve_until_stopped(settings, apps), settings.event_loop)
    return status


def build_bus(
    settings: Settings,
    apps: Sequence[Application],
    *,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    transports: Sequence[str] = ("websocket", "http"),
) -> tuple[Bus, AuthEngine]:
    """Build a bus and its auth engine from ``settings``, serving the auth application and ``apps``.

    The transports named in ``transports`` (``websocket``, ``http``; none for a bus that only
    runs its components) are served. The engine is the authenticator and authorizer unless
    others are given, or ``settings.no_auth`` lets every call in.
    """
    from endpoints.auth import create_app as create_auth
    from gateway import HttpGateway

    backplane = LocalBackplane()
    # The change feed tells the cache of every change, made here or by another process.
    store = create_store(settings, follow=False)
    feed = ChangeFeed(store, backplane)
    backplane.subscribe(">", applier(store.changed))
    engine = auth_engine(settings, store, backplane)
    registry = Registry([create_auth(engine.admin), *apps])
    registry.freeze()
    dispatcher = Dispatcher(
        registry,
        authenticator or (OpenAuthenticator() if settings.no_auth else engine.authenticator),
        authorizer or (AllowAll() if settings.no_auth else engine.authorizer),
        store=store,
        backplane=backplane,
        identify=_anyone if settings.no_auth else engine.identity_of,
        call_timeout=settings.call_timeout,
    )
    connections = Connections(settings.max_connections)  # one cap for every websocket entry
    served: dict[str, Transport] = {}
    if "websocket" in transports:
        served["websocket"] = WebSocketServer(dispatcher, settings, connections)
    if "http" in transports:
        served["http"] = HttpGateway(dispatcher, registry, settings, connections)
    resources: list[Component] = [
        StoreComponent(store),
        feed,
        Retention(store, settings.change_retention),
        engine,
        Endpoints(registry, dispatcher.services),
        Transports(served),
        Admission(dispatcher),
    ]
    return Bus(
        store=store,
        backplane=backplane,
        registry=registry,
        dispatcher=dispatcher,
        resources=resources,
        transports=served,
    ), engine


def auth_engine(settings: Settings, store: Store, backplane: Backplane | None = None) -> AuthEngine:
    """The auth engine on ``store``: the token secret from the data directory, the login throttle."""
    issuer = TokenIssuer(load_secret(Path(settings.data), settings.jwt_secret), settings.token_lifetime)
    throttle = LoginThrottle(
        settings.login_failures_per_user, settings.login_failures_per_address, settings.login_window
    )
    return AuthEngine(store, issuer, throttle, admin_password=settings.admin_password, backplane=backplane)


def load_app(spec: str) -> Application:
    """Load an application from ``module:attr``; ``attr`` may be an Application or a factory of one.

    Raises:
        ValueError: the spec is malformed or does not name an application.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--app {spec!r}: expected MODULE:ATTR")
    if os.getcwd() not in sys.path:
        # Like `python -m`, find applications in the current directory too.
        sys.path.insert(0, os.getcwd())
    target = getattr(importlib.import_module(module_name), attr)
    app = target
    if callable(target) and not isinstance(target, Application):
        try:
            app = target()
        except TypeError as exc:
            raise ValueError(f"--app {spec!r} is not a flowbus.Application or a factory of one ({exc})") from None
    if not isinstance(app, Application):
        raise ValueError(f"--app {spec!r} is not a flowbus.Application")
    return app


def _quiet_libraries(*, debug: bool) -> None:
    """Keep secrets out of the log: at debug level websockets logs every frame (logins carry
    passwords, answers tokens and keys) and aiosqlite every SQL parameter (stored hashes), so
    neither logs below INFO. Below debug, websockets logs warnings only: one line per
    connection is noise at INFO on a busy bus."""
    floor = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
    logging.getLogger("websockets").setLevel(floor if debug else logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(floor)


def _apps(settings: Settings) -> list[Application]:
    from endpoints import builtin_apps

    apps = [] if settings.no_builtin_apps else builtin_apps(flow_concurrency=settings.flow_concurrency)
    return apps + [load_app(spec) for spec in settings.apps]


def _run(main: Any, event_loop: str = "auto") -> Any:
    """Run ``main`` on uvloop when it is installed (or asked for), else on asyncio's own loop."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:  # outside the except clause: else every exception the bus logs is chained to the ImportError
            return uvloop.run(eager_tasks(main))
    if event_loop == "uvloop":
        main.close()
        raise SystemExit("flowbus: --event-loop uvloop needs uvloop: pip install 'flowbus[speed]'")
    return asyncio.run(eager_tasks(main))


def _anyone(subject: str) -> Identity:
    """Who anyone is on a bus without authentication: a user of that name with no roles."""
    return Identity(subject)


async def _serve_until_stopped(settings: Settings, apps: list[Application]) -> int:
    """Serve until SIGINT or SIGTERM; return the exit status (1 if the bus could not start)."""
    bus, engine = build_bus(settings, apps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bus.start()
    except (OSError, FlowBusError) as exc:  # a port in use, a bad bootstrap setting
        print(f"flowbus: cannot start: {exc}", file=sys.stderr)
        return 1
    except Exception:
        logging.getLogger("flowbus").exception("flowbus: cannot start")
        return 1
    try:
        _settle_collector()
        _announce(settings, bus, engine)
        await stop.wait()
        print("FlowBus shutting down", flush=True)
    finally:
        await bus.stop()
    print("FlowBus stopped", flush=True)
    return 0


GC_FIRST_GENERATION = 10_000
"""Net allocations of container objects between two runs of the cyclic garbage collector's
youngest generation (Python's default is 700)."""


def _settle_collector() -> None:
    """Tune Python's cyclic garbage collector for serving, once the bus has started.

    What exists by then (modules, applications, settings) lives as long as the process: frozen,
    no collection walks it again. Each call makes many short-lived dicts and lists that reference
    counting frees; at the default threshold the collector ran some 30 times a second under a
    flow load and took 4-8 % of the event loop's time, at 10,000 about 0.5 %. Cyclic garbage is
    still collected, a little later.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, middle, oldest)


def _announce(settings: Settings, bus: Bus, engine: AuthEngine) -> None:
    ws_url, http_url = bus.url("websocket"), bus.url("http")
    print(f"FlowBus serving data in {Path(settings.data).resolve()}", flush=True)
    if settings.no_auth:
        print("WARNING: --insecure-no-auth: every call is let in without credentials.", flush=True)
        print("WARNING: never run a bus like this where anyone else can reach it.", flush=True)
    if engine.generated_password:
        print(f"Created user 'admin' with password: {engine.generated_password}", flush=True)
        print("  (shown once; change it with `flowbus user passwd admin`)", flush=True)
    print(f"  websocket: {ws_url}", flush=True)
    print(f"  http:      {http_url}  (API under {http_url}/api/)", flush=True)
    print(f"{READY} ws={ws_url} http={http_url}", flush=True)
