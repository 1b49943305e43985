"""Server-Sent Events: GET .../?subscribe=1 streams the changes, resumes from Last-Event-ID."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.flowbus.helpers import DEVICE, ok, unique
from tests.support import Served, serve

PATH = "/api/inventory/inventory/device/"


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of the stream (``subscribed`` and keepalives skipped)."""
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 30)).decode().rstrip("\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if fields.get("event") not in (None, "subscribed"):
            events.append({"id": fields.get("id"), "event": fields["event"], **orjson.loads(fields["data"])})
        fields = {}
    return events


async def test_a_stream_of_changes_resumed_from_last_event_id(bus: Served) -> None:
    namespace = unique("ns")
    headers = {"Authorization": f"Bearer {bus.token}", "Flow-Request-Namespace": namespace}
    async with aiohttp.ClientSession() as http, bus.connect() as ws:
        async with http.get(bus.http_url + PATH + "?subscribe=1", headers=headers) as stream:
            assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
            await stream.content.readline()  # event: subscribed
            await stream.content.readline()
            await stream.content.readline()
            await ok(ws, "CREATE", DEVICE, data={"name": "first"}, namespace=namespace)
            (first,) = await read_events(stream, 1)
        assert (first["event"], first["data"]["name"], first["id"]) == ("CREATED", "first", str(first["seq"]))
        await ok(ws, "CREATE", DEVICE, data={"name": "missed"}, namespace=namespace)
        resumed = {**headers, "Last-Event-ID": first["id"]}
        async with http.get(bus.http_url + PATH + "?subscribe=1", headers=resumed) as stream:
            await ok(ws, "CREATE", DEVICE, data={"name": "live"}, namespace=namespace)
            events = await read_events(stream, 2)
        assert [e["data"]["name"] for e in events] == ["missed", "live"]


async def test_a_stream_is_refused_like_a_call(bus: Served) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(bus.http_url + PATH + "?subscribe=1") as refused:
            assert refused.status == 401
            assert (await refused.json())["errorcode"] == "AUTH_REQUIRED"
        headers = {"Authorization": f"Bearer {bus.token}"}
        async with http.get(bus.http_url + "/api/inventory/inventory/nothing/?subscribe=1", headers=headers) as gone:
            assert gone.status == 404


async def test_a_stream_in_a_dotted_namespace_or_of_an_odd_object_is_served(bus: Served) -> None:
    """A stream whose namespace or object id holds a dot (or another character subjects escape)
    starts and carries its changes; one that cannot be served is refused with an envelope."""
    namespace = "site." + unique("a")
    headers = {"Authorization": f"Bearer {bus.token}", "Flow-Request-Namespace": namespace}
    async with aiohttp.ClientSession() as http, bus.connect() as ws:
        async with http.get(bus.http_url + PATH + "?subscribe=1", headers=headers) as stream:
            assert stream.status == 200
            await stream.content.readline()  # event: subscribed
            created = await ok(ws, "CREATE", DEVICE, data={"name": "dotted"}, namespace=namespace)
            [event] = await read_events(stream, 1)
            assert (event["event"], event["objectid"]) == ("CREATED", created["id"])
        for objectid in ("sw.1", "50%25", "a%20b"):
            async with http.get(bus.http_url + PATH + objectid + "?subscribe=1", headers=headers) as stream:
                assert stream.status == 200, await stream.text()
        async with http.get(bus.http_url + PATH + "?subscribe=1&since=soon", headers=headers) as stream:
            assert stream.status == 400 and (await stream.json())["errorcode"] == "INVALID_REQUEST"
    assert "never retrieved" not in bus.log() and "Traceback" not in bus.log()


async def test_shutdown_ends_an_open_stream(tmp_path: Path) -> None:
    """A bus that shuts down ends its event streams (the client reads the end of the stream) and exits cleanly."""
    served = serve(tmp_path)
    try:
        headers = {"Authorization": f"Bearer {served.token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(served.http_url + PATH + "?subscribe=1", headers=headers) as stream:
                assert stream.status == 200
                await stream.content.readline()  # event: subscribed
                stopping = asyncio.get_running_loop().run_in_executor(None, served.stop)
                rest = await asyncio.wait_for(stream.content.read(), 60)
                assert b"event:" not in rest
                assert await stopping == 0
    finally:
        if served.process.poll() is None:
            served.stop()
