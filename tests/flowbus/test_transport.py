"""Both websocket entries under load: calls in tasks, backpressure, stalled readers, one connection cap."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.uri import parse_uri

from flowbus.bus import Bus
from flowbus.config import Settings
from flowbus.node import build_bus
from flowbus.server import WebSocketServer
from tests.apps import create_app as make_testing_app
from tests.flowbus.transport_app import create_app as make_transport_app
from tests.support import ENTRIES, PORT

SHELF = "testing/shelf"
DEADLINE = 30.0  # generous: the machine may be busy


@pytest.fixture(params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries."""
    return str(request.param)


class Running:
    """An in-process bus with its websocket port and its gateway."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        server = bus.transports["websocket"]
        assert isinstance(server, WebSocketServer)
        self.websocket = server
        self.connections = server.connections  # shared by both entries

    def url(self, entry: str) -> str:
        """The websocket URL of ``entry``."""
        if entry == PORT:
            return self.bus.url("websocket")
        return "ws" + self.bus.url("http").removeprefix("http") + "/ws"


@asynccontextmanager
async def running(tmp_path: Path, **values: Any) -> AsyncIterator[Running]:
    """Run a bus with the testing applications and ``values`` as settings."""
    settings = Settings.load({"data": tmp_path, "ws_port": 0, "http_port": 0, "no_auth": True, **values}, env={})
    bus, _ = build_bus(settings, [make_testing_app(), make_transport_app()])
    await bus.start()
    try:
        yield Running(bus, settings)
    finally:
        await bus.stop()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Running]:
    """A bus with default settings but a short write timeout."""
    async with running(tmp_path, write_timeout=1.0) as bus:
        yield bus


async def until(condition: Any, what: str) -> None:
    """Poll ``condition`` until it holds, within a generous deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.02)


async def test_an_endpoint_timing_itself_out_cancels_only_its_call(served: Running, entry: str) -> None:
    """An endpoint entering asyncio.timeout() before its first await times out alone; the connection answers on."""
    async with connect(served.url(entry)) as ws:
        await ws.send(
            orjson.dumps({"method": "RUN", "endpoint": "transport/early", "objectid": "x", "requestid": 1}).decode()
        )
        await ws.send(orjson.dumps({"method": "LIST", "endpoint": SHELF, "requestid": 2}).decode())
        answers = {}
        for _ in range(2):
            answer = orjson.loads(await ws.recv())
            answers[answer["requestid"]] = answer
        assert answers[1]["data"] == {"timed_out": True}
        assert answers[2]["success"] is True


async def test_a_late_reader_gets_every_answer(served: Running, entry: str) -> None:
    """A client pipelining 300 OPENs of a 20 KB object and reading late gets all 300 answers."""
    async with connect(served.url(entry), max_size=None) as ws:
        create = {"method": "CREATE", "endpoint": SHELF, "data": {"id": "big", "name": "x" * 20_000}}
        await ws.send(orjson.dumps(create).decode())
        assert orjson.loads(await ws.recv())["success"] is True
        for number in range(300):
            await ws.send(
                orjson.dumps({"method": "OPEN", "endpoint": SHELF, "objectid": "big", "requestid": number}).decode()
            )
        await asyncio.sleep(0.5)  # reading late: the bus's writes back up meanwhile
        seen = set()
        for _ in range(300):
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
            assert answer["success"] is True, answer
            assert len(answer["data"]["name"]) == 20_000
            seen.add(answer["requestid"])
        assert seen == set(range(300))


def handshake(url: str) -> tuple[socket.socket, ClientProtocol]:
    """Open a raw websocket (blocking socket) and finish its handshake."""
    uri = parse_uri(url)
    protocol = ClientProtocol(uri)
    sock = socket.create_connection((uri.host, uri.port), timeout=DEADLINE)
    protocol.send_request(protocol.connect())
    for data in protocol.data_to_send():
        sock.sendall(data)
    while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
        protocol.receive_data(sock.recv(65536))
    assert protocol.handshake_exc is None
    protocol.events_received()
    return sock, protocol


def keep_sending(sock: socket.socket, protocol: ClientProtocol, frames: int) -> bool:
    """Send OPENs without ever reading; True if the bus dropped the connection."""
    message = orjson.dumps({"method": "OPEN", "endpoint": SHELF, "objectid": "big"})
    try:
        for _ in range(frames):
            protocol.send_text(message)
            for data in protocol.data_to_send():
                sock.sendall(data)
    except OSError:  # reset, broken pipe, or a send blocked past the socket timeout
        return True
    return False


async def test_a_client_that_never_reads_is_dropped(served: Running, entry: str) -> None:
    """A client that stops reading is dropped after write_timeout, and its place in the cap is given back."""
    async with connect(served.url(entry)) as ws:
        await ws.send(
            orjson.dumps({"method": "CREATE", "endpoint": SHELF, "data": {"id": "big", "name": "x" * 20_000}}).decode()
        )
        assert orjson.loads(await ws.recv())["success"] is True
    await until(lambda: served.connections.count == 0, "the first connection ends")
    sock, protocol = await asyncio.to_thread(handshake, served.url(entry))
    sock.settimeout(5)
    try:
        assert served.connections.count == 1
        dropped = await asyncio.to_thread(keep_sending, sock, protocol, 100_000)
        assert dropped
        await until(lambda: served.connections.count == 0, "the stalled connection is released")
    finally:
        sock.close()


async def test_the_cap_holds_across_both_entries(tmp_path: Path) -> None:
    """max_connections counts the websocket port and the gateway's /ws together."""
    async with running(tmp_path, max_connections=2) as bus:
        async with connect(bus.url(PORT)), connect(bus.url("gateway-ws")):
            for entry in ENTRIES:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(bus.url(entry)):
                        pass
                assert refused.value.response.status_code == 503
        await until(lambda: bus.connections.count == 0, "both connections end")
        async with connect(bus.url("gateway-ws")):
            pass


async def test_a_handshake_in_progress_counts(tmp_path: Path) -> None:
    """A TCP connection that has not finished its handshake takes a place under the cap."""
    async with running(tmp_path, max_connections=1) as bus:
        host, port = bus.settings.host, bus.websocket.port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await until(lambda: bus.connections.count == 1, "the handshake is counted")
            with pytest.raises(InvalidStatus) as refused:
                async with connect(bus.url("gateway-ws")):
                    pass
            assert refused.value.response.status_code == 503
        finally:
            writer.close()
            await writer.wait_closed()
        await until(lambda: bus.connections.count == 0, "the place is given back")


async def test_keepalive_pings_and_closes_a_silent_peer(tmp_path: Path, entry: str) -> None:
    """Both entries ping every ping_interval; a peer that answers stays, one that stops is closed 1011."""
    async with running(tmp_path, ping_interval=0.2, ping_timeout=0.5) as bus:
        async with aiohttp.ClientSession() as http, http.ws_connect(bus.url(entry), autoping=False) as ws:
            for _ in range(3):  # answered pings keep coming: the connection is kept
                ping = await ws.receive(timeout=DEADLINE)
                assert ping.type is aiohttp.WSMsgType.PING
                await ws.pong(ping.data)
            await ws.send_str(orjson.dumps({"method": "LIST", "endpoint": SHELF}).decode())
            answer = await _next_not_ping(ws)
            assert orjson.loads(answer.data)["success"] is True
            closed = await _next_not_ping(ws)  # no more pongs: closed
            assert closed.type is aiohttp.WSMsgType.CLOSE
            assert closed.data == 1011


async def _next_not_ping(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    while True:
        message = await ws.receive(timeout=DEADLINE)
        if message.type is not aiohttp.WSMsgType.PING:
            return message


async def test_a_clients_ping_is_answered(served: Running, entry: str) -> None:
    """A ping from the client gets its pong, with the same payload."""
    async with aiohttp.ClientSession() as http, http.ws_connect(served.url(entry), autoping=False) as ws:
        await ws.ping(b"are you there")
        pong = await _next_not_ping(ws)
        assert pong.type is aiohttp.WSMsgType.PONG
        assert pong.data == b"are you there"
