"""The one pipeline: Dispatcher.handle answers every call of every transport, and logs what it must."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from endpoints import create_inventory
from flowbus.answers import failure
from flowbus.auth.authorizer import BUILTIN_ROLES, RoleAuthorizer
from flowbus.auth.base import Credentials, Identity
from flowbus.bus import Bus
from flowbus.config import Settings
from flowbus.endpoint import Application, Call, Endpoint
from flowbus.errors import FlowBusError, InternalError, NoSuchEndpoint
from flowbus.node import build_bus
from flowbus.protocol import Method, Page, Request, Response
from tests.apps import create_app as make_testing_app

ADMIN = Identity("admin", frozenset({"admin"}))


def make_bus(tmp_path: Path, **settings: Any) -> Bus:
    """A bus without transports (its dispatcher is called directly) with the testing applications."""
    loaded = Settings.load({"data": tmp_path, "no_auth": True, **settings}, env={})
    bus, _ = build_bus(loaded, [create_inventory(), make_testing_app(), _timeouts()], transports=())
    return bus


def _timeouts() -> Application:
    app = Application("timeouts")

    @app.endpoint("timeouts/own")
    class Own(Endpoint):
        """Raises a TimeoutError of its own (not the call's deadline)."""

        async def run(self, call: Call) -> Any:
            async with asyncio.timeout(0):
                await asyncio.sleep(1)

    return app


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    served = make_bus(tmp_path, call_timeout=0.2)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def handle(bus: Bus, method: Method, endpoint: str, **fields: Any) -> Response:
    return await bus.dispatcher.handle(Request(method, endpoint, **fields), Credentials())


async def test_every_failure_is_an_answer(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """Unknown endpoints and methods, a missing objectid, an endpoint that raises, a call past its
    deadline, an endpoint's own TimeoutError: each is an error answer with its code, never a raise."""
    unknown = await handle(bus, Method.LIST, "no/such")
    unsupported = await handle(bus, Method.INDEX, "testing/boom")
    missing = await handle(bus, Method.OPEN, "inventory/device")
    with caplog.at_level(logging.ERROR, logger="flowbus.dispatcher"):
        boom = await handle(bus, Method.RUN, "testing/boom", objectid="x")
        own = await handle(bus, Method.RUN, "timeouts/own", objectid="x")
    late = await handle(bus, Method.RUN, "testing/slow", objectid="x", data={"seconds": 30})
    assert [r.error.errorcode if r.error else None for r in (unknown, unsupported, missing, boom, own, late)] == [
        "NO_SUCH_ENDPOINT",
        "METHOD_NOT_SUPPORTED",
        "MISSING_OBJECTID",
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
        "TIMEOUT",
    ]
    assert boom.error is not None and boom.error.errorid is not None and "boom" not in boom.error.message
    errorid = boom.error.errorid
    assert [r for r in caplog.records if errorid in r.getMessage()][0].exc_info is not None


async def test_subscribe_needs_a_streaming_transport(bus: Bus) -> None:
    """SUBSCRIBE is routed and authorized like any call; without a sink (HTTP, a call made inside
    the bus) it is not supported."""
    answer = await handle(bus, Method.SUBSCRIBE, "inventory/device")
    assert answer.error is not None and answer.error.errorcode == "METHOD_NOT_SUPPORTED"
    answer = await handle(bus, Method.SUBSCRIBE, "no/such")
    assert answer.error is not None and answer.error.errorcode == "NO_SUCH_ENDPOINT"


async def test_the_fast_path_answers_only_cached_opens(bus: Bus) -> None:
    """answer_now answers an OPEN of a cached object with its stored JSON and version, exactly as
    handle() does, and nothing else: another method, an unknown object, a closing bus."""
    created = (await handle(bus, Method.CREATE, "inventory/device", data={"name": "sw"})).data
    request = Request(Method.OPEN, "inventory/device", created["id"])
    now = bus.dispatcher.answer_now(request, Credentials())
    assert now is not None and now.version == created["version"] == 1
    assert now.stored is not None and orjson.loads(now.stored) == created
    handled = await bus.dispatcher.handle(request, Credentials())
    assert (handled.stored, handled.version) == (now.stored, now.version)
    assert bus.dispatcher.answer_now(Request(Method.OPEN, "inventory/device", "nothing"), Credentials()) is None
    assert bus.dispatcher.answer_now(Request(Method.LIST, "inventory/device"), Credentials()) is None
    bus.dispatcher.closing = True
    try:
        assert bus.dispatcher.answer_now(request, Credentials()) is None
        refused = await bus.dispatcher.handle(request, Credentials())
        assert refused.error is not None and refused.error.errorcode == "UNAVAILABLE"
    finally:
        bus.dispatcher.closing = False


async def test_a_call_made_inside_the_bus_takes_the_pipeline(bus: Bus) -> None:
    """services.call answers the data of a success and raises the error of a failure."""
    call = bus.dispatcher.services.call
    created = await call(ADMIN, "CREATE", "inventory/device", data={"name": "inner"})
    assert (await call(ADMIN, "OPEN", "inventory/device", objectid=created["id"]))["name"] == "inner"
    assert [item["id"] for item in await call(ADMIN, "LIST", "inventory/device")] == [created["id"]]
    page = await call(ADMIN, "LIST", "inventory/device", parameters={"limit": 1}, whole=True)
    assert isinstance(page, Page) and (page.total, page.limit, len(page.items)) == (1, 1, 1)
    with pytest.raises(FlowBusError) as refused:
        await call(ADMIN, "RUN", "testing/slow", objectid="x", data={"seconds": 30})
    assert refused.value.errorcode == "TIMEOUT"


def test_a_server_error_with_a_cause_is_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An InternalError raised from a store's exception is logged with that exception under its errorid."""
    error = InternalError()
    try:
        raise OSError("disk full")
    except OSError as exc:
        error.__cause__ = exc  # what `raise InternalError() from exc` sets
    with caplog.at_level(logging.ERROR, logger="flowbus.dispatcher"):
        response = failure(error, None)
    assert response.error is error and error.errorid is not None
    [record] = [r for r in caplog.records if error.errorid in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)


def test_a_client_error_is_logged_without_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A refusal (status below 500) is logged at INFO without exc_info."""
    with caplog.at_level(logging.INFO, logger="flowbus.dispatcher"):
        failure(NoSuchEndpoint("none"), None)
    assert all(record.exc_info is None for record in caplog.records)


async def test_permits_answers_as_the_pipeline_decides(tmp_path: Path) -> None:
    """Services.permits asks the bus's authorizer as a call would: an unknown endpoint or a method
    it does not take is never permitted, a public method always, the rest as the roles say."""
    loaded = Settings.load({"data": tmp_path}, env={})
    served, _ = build_bus(loaded, [create_inventory()], authorizer=RoleAuthorizer(BUILTIN_ROLES), transports=())
    permits = served.dispatcher.services.permits
    viewer = Identity("vera", frozenset({"viewer"}))
    limited = Identity("sam", frozenset({"operator"}), frozenset({"site-a"}))
    assert permits(ADMIN, "UPDATE", "inventory/device", "")
    assert not permits(ADMIN, "RUN", "inventory/device", "")  # a collection takes no RUN
    assert not permits(ADMIN, "LIST", "no/such", "")
    assert permits(viewer, "LIST", "inventory/device", "")
    assert not permits(viewer, "UPDATE", "inventory/device", "")
    assert permits(viewer, "CREATE", "auth/token", "")  # the login is public
    assert permits(limited, "DELETE", "inventory/device", "site-a")
    assert not permits(limited, "LIST", "inventory/device", "site-b")
