"""The ``flowbus`` command: ``serve`` runs a bus, ``call`` makes one call to a running bus.

This module is the composition root: the only place in ``flowbus`` that imports the gateway
and the built-in applications.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from flowbus.auth.base import AllowAll, Authenticator, Authorizer, Identity, OpenAuthenticator
from flowbus.auth.engine import AuthEngine
from flowbus.auth.names import AUTH_TOKENS
from flowbus.auth.throttle import LoginThrottle
from flowbus.auth.tokens import TokenIssuer, load_secret
from flowbus.backplane import Backplane, LocalBackplane
from flowbus.bus import Bus, Transport
from flowbus.client import Client
from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.endpoint import Application, Services
from flowbus.errors import FlowBusError
from flowbus.feed import ChangeFeed, Retention, applier
from flowbus.handshake import Connections
from flowbus.protocol import Method
from flowbus.registry import Registry
from flowbus.server import WebSocketServer
from flowbus.store import CachedStore, Store, create_store
from flowbus.tasks import eager_tasks

__all__ = ["build_bus", "load_app", "main"]

READY = "FlowBus ready"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowbus", description="FlowBus: a websocket RPC message bus.")
    commands = parser.add_subparsers(dest="command")
    _add_serve(commands)
    _add_call(commands)
    _add_user(commands)
    _add_token(commands)
    _add_bench(commands)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the bus (websocket server and HTTP gateway)")
    serve.add_argument("--host", help=Settings.help("host"))
    serve.add_argument("--ws-port", type=int, help=Settings.help("ws_port"))
    serve.add_argument("--http-port", type=int, help=Settings.help("http_port"))
    serve.add_argument("--data", type=Path, help=Settings.help("data"))
    serve.add_argument("--store", metavar="URL", help=Settings.help("store"))
    serve.add_argument("--app", dest="apps", action="append", metavar="MODULE:ATTR", help="also serve this application")
    serve.add_argument("--no-builtin-apps", action="store_const", const=True, help=Settings.help("no_builtin_apps"))
    serve.add_argument("--log-level", help=Settings.help("log_level"))
    serve.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], help=Settings.help("event_loop"))
    serve.add_argument(
        "--insecure-no-auth", dest="no_auth", action="store_const", const=True, help=Settings.help("no_auth")
    )
    serve.set_defaults(run=_serve)


def _add_user(commands: Any) -> None:
    user = commands.add_parser("user", help="manage users in the data directory (works while the bus runs)")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user (asks for the password, or reads FLOWBUS_PASSWORD)")
    add.add_argument("name")
    add.add_argument("--role", dest="roles", action="append", help="role (repeatable; default viewer)")
    add.add_argument("--namespace", dest="namespaces", action="append", help="limit to namespace (repeatable)")
    passwd = actions.add_parser("passwd", help="set a user's password (revokes the user's tokens)")
    passwd.add_argument("name")
    for sub in (add, passwd):
        sub.add_argument("--data", type=Path, help=Settings.help("data"))
    user.set_defaults(run=_user)


def _add_token(commands: Any) -> None:
    token = commands.add_parser("token", help="log in to a running bus and print a token")
    token.add_argument("--user", required=True)
    token.add_argument("--url", help="websocket URL (default: FLOWBUS_URL or ws://127.0.0.1:8765)")
    token.set_defaults(run=_token)


def _add_call(commands: Any) -> None:
    call = commands.add_parser("call", help="make one call and print the answer (exit 1 if it failed)")
    call.add_argument("endpoint", help="e.g. inventory/device")
    call.add_argument("method", type=str.upper, choices=[m.value for m in Method])
    call.add_argument("--objectid")
    call.add_argument("--data", help="JSON object, or @file to read it from a file")
    call.add_argument("--param", action="append", default=[], metavar="K=V", help="a parameter (repeatable)")
    call.add_argument("--namespace", default="")
    call.add_argument("--token", help="token (default: FLOWBUS_TOKEN)")
    call.add_argument("--url", help="websocket URL (default: FLOWBUS_URL or ws://127.0.0.1:8765)")
    call.set_defaults(run=_call)


def _add_bench(commands: Any) -> None:
    # Every argument goes on to bench/run.py untouched (--help included): with a prefix character no
    # argument starts with, this parser sees none of them as its own options.
    bench = commands.add_parser(
        "bench",
        help="run the benchmark from the source tree (bench/run.py; --help there)",
        add_help=False,
        prefix_chars="\0",
    )
    bench.add_argument("args", nargs="*")
    bench.set_defaults(run=_bench)


# -- serve ------------------------------------------------------------------------------------


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


def _serve(args: argparse.Namespace) -> int:
    flags = {
        k: getattr(args, k, None) for k in ("host", "ws_port", "http_port", "data", "store", "log_level", "event_loop")
    }
    flags["no_builtin_apps"] = args.no_builtin_apps
    flags["no_auth"] = args.no_auth
    flags["apps"] = tuple(args.apps) if args.apps else None
    try:
        settings = Settings.load(flags)
    except ValueError as exc:
        print(f"flowbus: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_libraries(debug=settings.log_level.lower() == "debug")
    try:
        apps = _apps(settings)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"flowbus: {exc}", file=sys.stderr)
        return 2
    status: int = _run(_serve_until_stopped(settings, apps), settings.event_loop)
    return status


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


def _engine(settings: Settings, store: Store, backplane: Backplane | None = None) -> AuthEngine:
    issuer = TokenIssuer(load_secret(Path(settings.data), settings.jwt_secret), settings.token_lifetime)
    throttle = LoginThrottle(
        settings.login_failures_per_user, settings.login_failures_per_address, settings.login_window
    )
    return AuthEngine(store, issuer, throttle, admin_password=settings.admin_password, backplane=backplane)


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


def build_bus(
    settings: Settings,
    apps: Sequence[Application],
    *,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    transports: Sequence[str] = ("websocket", "http"),
) -> tuple[Bus, AuthEngine]:
    """Build a bus and its auth engine from ``settings``, serving the auth application and ``apps``.

    In order: the store, the backplane, the auth engine, the registry, the dispatcher and the
    transports named in ``transports`` (``websocket``, ``http``; none for a bus that only runs
    its components). The engine's authenticator and authorizer serve unless others are given, or
    ``settings.no_auth`` lets every call in; the auth application is given the engine's admin.
    """
    from endpoints.auth import create_app as create_auth
    from gateway import HttpGateway

    store = create_store(settings)
    backplane = LocalBackplane()
    feed = ChangeFeed(store, backplane)
    if isinstance(store, CachedStore):  # the feed tells the cache of every change, here or elsewhere
        store.follow = False
        backplane.subscribe(">", applier(store.changed))
    engine = _engine(settings, store, backplane)
    registry = Registry([create_auth(engine.admin), *apps])
    identify = _anyone if settings.no_auth else engine.identity_of
    services = Services(store, backplane, registry.describe, identify=identify, functions=registry.functions)
    dispatcher = Dispatcher(
        registry,
        services,
        authenticator or (OpenAuthenticator() if settings.no_auth else engine.authenticator),
        authorizer or (AllowAll() if settings.no_auth else engine.authorizer),
        call_timeout=settings.call_timeout,
    )
    connections = Connections(settings.max_connections)  # one cap for every websocket entry
    makers: dict[str, Callable[[], Transport]] = {
        "websocket": lambda: WebSocketServer(dispatcher, settings, connections),
        "http": lambda: HttpGateway(dispatcher, registry, settings, connections),
    }
    bus = Bus(
        store=store,
        backplane=backplane,
        registry=registry,
        dispatcher=dispatcher,
        components=[feed, Retention(store, settings.change_retention), engine],
        transports={name: makers[name]() for name in transports},
    )
    return bus, engine


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


# -- bench ------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    """Run bench/run.py of the source tree this package was loaded from, with this interpreter."""
    import subprocess

    import flowbus

    script = Path(flowbus.__file__).resolve().parent.parent / "bench" / "run.py"
    if not script.is_file():
        print(
            "flowbus bench: the benchmark ships with the source tree (bench/run.py), not with the installed"
            " package; run it from a checkout of FlowBus (make bench)",
            file=sys.stderr,
        )
        return 2
    return subprocess.run([sys.executable, str(script), *args.args]).returncode


# -- user and token ---------------------------------------------------------------------------


def _password(prompt: str) -> str:
    given = os.environ.get("FLOWBUS_PASSWORD")
    if given:
        return given
    return getpass.getpass(prompt)


def _user(args: argparse.Namespace) -> int:
    settings = Settings.load({"data": args.data})
    password = _password(f"Password for {args.name}: ")
    try:
        asyncio.run(_change_user(settings, args, password))
    except FlowBusError as exc:
        print(f"flowbus user: {exc.message}", file=sys.stderr)
        return 1
    print(f"user {args.name}: {'added' if args.action == 'add' else 'password changed'}")
    return 0


async def _change_user(settings: Settings, args: argparse.Namespace, password: str) -> None:
    store = create_store(settings)
    await store.open()
    try:
        engine = _engine(settings, store)
        await engine.load()
        if args.action == "add":
            await engine.admin.add_user(args.name, password, args.roles or ["viewer"], args.namespaces)
        else:
            await engine.admin.change_user(args.name, {"password": password})
    finally:
        await store.close()


def _token(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("FLOWBUS_URL") or "ws://127.0.0.1:8765"
    password = _password(f"Password for {args.user}: ")
    data = {"username": args.user, "password": password}
    envelope = asyncio.run(_call_once(url, None, "CREATE", AUTH_TOKENS, {"data": data}))
    if not envelope.get("success"):
        print(f"flowbus token: {envelope.get('errorcode')}: {envelope.get('message')}", file=sys.stderr)
        return 1
    print(envelope["data"]["token"])
    return 0


# -- call -------------------------------------------------------------------------------------


def _call(args: argparse.Namespace) -> int:
    try:
        data = _read_data(args.data)
        params = dict(_split_param(p) for p in args.param)
    except (OSError, ValueError) as exc:
        print(f"flowbus call: {exc}", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("FLOWBUS_URL") or "ws://127.0.0.1:8765"
    token = args.token or os.environ.get("FLOWBUS_TOKEN")
    request = {"objectid": args.objectid, "data": data, "parameters": params, "namespace": args.namespace}
    envelope = asyncio.run(_call_once(url, token, args.method, args.endpoint, request))
    sys.stdout.write(orjson.dumps(envelope, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if envelope.get("success") else 1


async def _call_once(
    url: str, token: str | None, method: str, endpoint: str, request: dict[str, Any]
) -> dict[str, Any]:
    try:
        async with Client(url, token=token, retries=0) as client:
            return await client.envelope(method, endpoint, **request)
    except FlowBusError as exc:
        return {"status": 0, "success": False, "message": exc.message, "errorcode": exc.errorcode}
    except OSError as exc:
        return {"status": 0, "success": False, "message": f"Cannot reach {url}: {exc}", "errorcode": "UNAVAILABLE"}


def _read_data(value: str | None) -> Any:
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("--data is not valid JSON") from None


def _split_param(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise ValueError(f"--param {value!r}: expected K=V")
    return key, val
