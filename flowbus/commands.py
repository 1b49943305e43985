"""The commands that talk to a bus or its data: ``call``, ``token``, ``user`` and ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from flowbus.auth.names import AUTH_TOKENS
from flowbus.client import Client
from flowbus.config import Settings
from flowbus.errors import FlowBusError
from flowbus.node import auth_engine
from flowbus.store import create_store

__all__ = ["bench", "call", "token", "user"]


def bench(args: argparse.Namespace) -> int:
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


def _password(prompt: str) -> str:
    given = os.environ.get("FLOWBUS_PASSWORD")
    if given:
        return given
    return getpass.getpass(prompt)


def user(args: argparse.Namespace) -> int:
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
        engine = auth_engine(settings, store)
        await engine.load()
        if args.action == "add":
            await engine.admin.add_user(args.name, password, args.roles or ["viewer"], args.namespaces)
        else:
            await engine.admin.change_user(args.name, {"password": password})
    finally:
        await store.close()


def token(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("FLOWBUS_URL") or "ws://127.0.0.1:8765"
    password = _password(f"Password for {args.user}: ")
    data = {"username": args.user, "password": password}
    envelope = asyncio.run(_call_once(url, None, "CREATE", AUTH_TOKENS, {"data": data}))
    if not envelope.get("success"):
        print(f"flowbus token: {envelope.get('errorcode')}: {envelope.get('message')}", file=sys.stderr)
        return 1
    print(envelope["data"]["token"])
    return 0


def call(args: argparse.Namespace) -> int:
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
