"""The ``flowbus`` command line: it parses flags and hands them on.

``serve`` runs a bus (:func:`flowbus.node.serve`, the composition root); ``call``, ``token``,
``user`` and ``bench`` are in :mod:`flowbus.commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowbus import commands as command
from flowbus.config import Settings
from flowbus.node import serve
from flowbus.protocol import Method

__all__ = ["main"]


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
    user.set_defaults(run=command.user)


def _add_token(commands: Any) -> None:
    token = commands.add_parser("token", help="log in to a running bus and print a token")
    token.add_argument("--user", required=True)
    token.add_argument("--url", help="websocket URL (default: FLOWBUS_URL or ws://127.0.0.1:8765)")
    token.set_defaults(run=command.token)


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
    call.set_defaults(run=command.call)


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
    bench.set_defaults(run=command.bench)


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
    return serve(settings)
