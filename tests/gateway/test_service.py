"""The gateway as a service: OpenAPI, health, unknown paths, body size, last-resort errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from flowbus.auth.base import AllowAll, OpenAuthenticator
from flowbus.config import Settings
from flowbus.node import build_bus
from gateway import create_app
from tests.apps import create_app as create_testing_app
from tests.gateway.helpers import DEVICES, fetch
from tests.support import Served, serving

LIMIT = 1024


async def test_openapi_document_validates(http: aiohttp.ClientSession) -> None:
    """/api/openapi.json is a valid OpenAPI 3.1 document listing inventory/device's operations."""
    async with http.get("/api/openapi.json") as response:
        assert response.status == 200 and response.content_type == "application/json"
        document = orjson.loads(await response.read())
    validate(document)
    assert document["openapi"].startswith("3.1")
    collection = document["paths"]["/api/inventory/inventory/device/"]
    item = document["paths"]["/api/inventory/inventory/device/{objectid}"]
    assert set(collection) == {"get", "post"}
    assert {"get", "post", "put", "patch", "delete"} <= set(item)
    body = collection["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert document["components"]["schemas"][body.rsplit("/", 1)[1]]["required"] == ["name"]
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values() if "operationId" in op]
    assert len(ids) == len(set(ids))
    assert "/api/system/system/endpoint/" in document["paths"]
    assert set(document["components"]["securitySchemes"]) >= {"basic", "bearer", "flowToken", "apiKey"}


async def test_openapi_describes_run_and_index(echo_http: aiohttp.ClientSession) -> None:
    """An endpoint with RUN and INDEX shows them as Flow-Request-Method values of POST and GET."""
    async with echo_http.get("/api/openapi.json") as response:
        document = orjson.loads(await response.read())
    validate(document)
    item = document["paths"]["/api/echo/echo/call/{objectid}"]
    methods = {verb: _method_enum(op) for verb, op in item.items() if verb != "parameters"}
    assert methods["post"] == ["UPDATE", "RUN"] and methods["get"] == ["OPEN", "INDEX"]
    assert "/api/echo/echo/deep/call/" in document["paths"]


def _method_enum(operation: dict[str, Any]) -> list[str]:
    return next(p["schema"]["enum"] for p in operation["parameters"] if p.get("name") == "Flow-Request-Method")


async def test_healthz(http: aiohttp.ClientSession) -> None:
    """/healthz answers 200 with status ok while the bus serves."""
    async with http.get("/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/nothing/here", "/apix/inventory"])
async def test_unknown_paths_answer_404_envelope(http: aiohttp.ClientSession, path: str) -> None:
    """Paths outside /api answer a 404 NO_SUCH_ENDPOINT envelope."""
    status, envelope = await fetch(http, "GET", path)
    assert (status, envelope["errorcode"], envelope["success"]) == (404, "NO_SUCH_ENDPOINT", False)


@pytest.fixture
def small_bus(tmp_path: Path) -> Iterator[Served]:
    """A bus of this test's own whose largest body is LIMIT bytes."""
    with serving(tmp_path, env={"FLOWBUS_MAX_MESSAGE_SIZE": str(LIMIT)}) as served:
        yield served


async def test_body_over_limit_is_413(small_bus: Served) -> None:
    """A body over max_message_size answers 413 TOO_LARGE; a body of exactly the limit is taken."""
    padding = LIMIT - len(b'{"name":"big","description":""}')
    exact = b'{"name":"big","description":"' + b"x" * padding + b'"}'
    assert len(exact) == LIMIT
    headers = {"Flow-Auth-Token": small_bus.token or ""}
    async with aiohttp.ClientSession(base_url=small_bus.http_url, headers=headers) as http:
        status, envelope = await fetch(http, "POST", DEVICES, data=exact)
        assert status == 201, envelope
        status, envelope = await fetch(http, "POST", DEVICES, data=exact[:-2] + b'x"}')
        assert (status, envelope["errorcode"]) == (413, "TOO_LARGE")
        status, _ = await fetch(http, "GET", DEVICES)
        assert status == 200
    assert envelope["errorid"] in small_bus.log()


@pytest.fixture
async def broken_gateway(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An in-process gateway serving ``tests.apps``, with an extra route that fails with an unexpected
    exception: the gateway's error boundary answers it."""

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail /etc/passwd")

    settings = Settings(data=tmp_path)
    bus, _ = build_bus(
        settings, [create_testing_app()], authenticator=OpenAuthenticator(), authorizer=AllowAll(), transports=()
    )
    app = create_app(bus.dispatcher, bus.registry, settings)
    app.router.add_get("/boom", boom)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize(
    ("verb", "path", "headers"),
    [
        pytest.param("GET", "/boom", {}, id="handler-raises"),
        pytest.param(
            "POST", "/api/testing/testing/unserializable/x", {"Flow-Request-Method": "RUN"}, id="answer-not-json"
        ),
    ],
)
async def test_unexpected_exception_is_internal_error(
    broken_gateway: TestClient[web.Request, web.Application],
    caplog: pytest.LogCaptureFixture,
    verb: str,
    path: str,
    headers: dict[str, str],
) -> None:
    """An unexpected exception answers 500 INTERNAL_ERROR; the traceback is only logged, under the errorid."""
    with caplog.at_level(logging.ERROR, logger="gateway"):
        response = await broken_gateway.request(verb, path, headers=headers)
        envelope = await response.json()
    assert (response.status, envelope["errorcode"], envelope["success"]) == (500, "INTERNAL_ERROR", False)
    assert "secret" not in orjson.dumps(envelope).decode()
    record = next(r for r in caplog.records if envelope["errorid"] in r.getMessage())
    assert record.exc_info is not None


async def test_the_console_and_the_browser_client_are_served(http: aiohttp.ClientSession) -> None:
    """/ is the console's page; its script and the browser client are served beside it."""
    for path, kind in [("/", "text/html"), ("/console/console.js", "javascript"), ("/client/flowbus.js", "javascript")]:
        async with http.get(path) as response:
            assert response.status == 200, path
            assert kind in response.headers["Content-Type"], path
            assert len(await response.read()) > 500


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="request-line-too-long"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", id="nul-in-a-header"),
    ],
)
async def test_a_malformed_request_is_one_warning_line(small_bus: Served, raw: bytes) -> None:
    """A request aiohttp cannot parse is answered 400 and logged as one WARNING line, no traceback."""
    host, port = small_bus.http_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    status_line = await reader.readline()
    writer.close()
    assert b" 400 " in status_line
    for _ in range(50):  # the server logs after it answered
        if "refused a malformed HTTP request" in small_bus.log():
            break
        await asyncio.sleep(0.1)
    log = small_bus.log()
    assert "WARNING aiohttp.server: refused a malformed HTTP request (400)" in log
    assert "Traceback" not in log and "ERROR" not in log
