"""A test application, ``testing``, served with ``flowbus serve --app tests.apps:create_app``.

Its endpoints misbehave on purpose, so tests can prove what the bus does around them:

* ``testing/slow`` RUN sleeps ``data.seconds`` (default 1) and answers ``{"slept": seconds}``.
* ``testing/gate`` RUN, ``objectid`` naming a gate, ``data.action`` one of:
  ``wait`` (default) blocks until released and answers ``{"gate": id, "released": true}``;
  ``release`` releases the oldest waiter (all of them with ``data.all``) and answers what it saw:
  ``{"released": n, "waiting": waiting before, "touched": n}``;
  ``touch`` counts one touch of the gate and answers ``{"touched": n}``;
  ``status`` answers ``{"waiting": n, "touched": n, "slow": slow calls running}``.
  SIGUSR1 to the served process releases every waiter of every gate (for tests of shutdown,
  when the bus no longer takes calls).
* ``testing/boom`` RUN raises a plain RuntimeError (a bug, as far as the bus knows).
* ``testing/unserializable`` RUN answers something that is not JSON.
* ``testing/masked`` is a collection whose OPEN answers the object without its ``secret`` field
  and with ``"masked": true`` (an endpoint that overrides ``open``: OPEN must never bypass it).
* ``testing/shelf`` is a collection whose objects need a string ``name``; RUN ``replace``
  with ``data.old`` (an id) and ``data.new`` (an object with its ``id``) deletes the one and
  creates the other in one store transaction, and answers both.

``create_broken_app`` builds an application whose endpoint fails to start.

State lives in the served process; tests keep apart by gate names.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flowbus import Application, Call, Collection, Endpoint, Services
from flowbus.store import Delete, Insert, Write

__all__ = ["create_app", "create_broken_app"]

SECRET = "secret-detail-that-must-stay-in-the-log"


@dataclass
class _Gate:
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    touched: int = 0


_gates: defaultdict[str, _Gate] = defaultdict(_Gate)
_slow_running = 0


class Slow(Endpoint):
    description = "Sleeps data.seconds, then answers"

    async def run(self, call: Call) -> dict[str, Any]:
        global _slow_running
        seconds = float((call.object).get("seconds", 1))
        _slow_running += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            _slow_running -= 1
        return {"slept": seconds}


class Gate(Endpoint):
    description = "Blocks callers until another call releases them"

    async def startup(self, services: Services) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _release_everyone)

    async def run(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        gate = _gates[call.objectid]
        data = call.object
        action = data.get("action", "wait")
        if action == "wait":
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            gate.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in gate.waiters:
                    gate.waiters.remove(waiter)
            return {"gate": call.objectid, "released": True}
        if action == "release":
            waiting = len(gate.waiters)
            chosen = list(gate.waiters) if data.get("all") else gate.waiters[:1]
            for waiter in chosen:
                gate.waiters.remove(waiter)
                waiter.set_result(None)
            return {"released": len(chosen), "waiting": waiting, "touched": gate.touched}
        if action == "touch":
            gate.touched += 1
            return {"touched": gate.touched}
        if action == "status":
            return {"waiting": len(gate.waiters), "touched": gate.touched, "slow": _slow_running}
        raise ValueError(f"unknown gate action {action!r}")


def _release_everyone() -> None:
    for gate in _gates.values():
        for waiter in gate.waiters:
            if not waiter.done():
                waiter.set_result(None)


class Boom(Endpoint):
    description = "Fails with a plain exception"

    async def run(self, call: Call) -> Any:
        raise RuntimeError(f"boom: {SECRET}")


class Unserializable(Endpoint):
    description = "Answers a value that JSON cannot carry"

    async def run(self, call: Call) -> Any:
        return {"value": object()}


class Masked(Collection):
    description = "A collection whose OPEN hides the secret field"

    async def open(self, call: Call) -> dict[str, Any]:
        obj = await super().open(call)
        obj.pop("secret", None)
        return {**obj, "masked": True}


class Shelf(Collection):
    description = "A collection whose RUN replace swaps one object for another in a transaction"

    def __init__(self, name: str) -> None:
        schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
        super().__init__(name, schema=schema)

    async def run(self, call: Call) -> dict[str, Any]:
        data, ns = call.object, call.namespace
        writes: list[Write] = [Delete(self.name, ns, data["old"]), Insert(self.name, ns, data["new"], self.prepare)]
        removed, added = await call.store.transaction(writes)
        return {"removed": removed, "added": added}


def create_app() -> Application:
    """Build the ``testing`` application."""
    app = Application("testing", description="Endpoints that misbehave on purpose")
    app.add(Slow("testing/slow"))
    app.add(Gate("testing/gate"))
    app.add(Boom("testing/boom"))
    app.add(Unserializable("testing/unserializable"))
    app.add(Masked("testing/masked"))
    app.add(Shelf("testing/shelf"))
    return app


class BrokenStartup(Endpoint):
    description = "Fails to start"

    async def startup(self, services: Services) -> None:
        raise RuntimeError(f"cannot start: {SECRET}")

    async def run(self, call: Call) -> Any:
        return None


def create_broken_app() -> Application:
    """An application that makes the bus fail to start."""
    app = Application("broken")
    app.add(BrokenStartup("broken/startup"))
    return app
