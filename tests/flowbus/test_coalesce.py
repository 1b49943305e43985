"""CoalescingTransport on a real socket pair: writes of one turn leave together, none is lost."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from flowbus.coalesce import FLUSH_BYTES, CoalescingTransport


class Peer:
    """The far end of the socket pair, read without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def available(self) -> bytes:
        """What has arrived so far (b"" if nothing)."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[CoalescingTransport, Peer]]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    try:
        yield CoalescingTransport(transport), Peer(theirs)  # type: ignore[arg-type]
    finally:
        transport.close()
        theirs.close()


async def test_writes_of_one_turn_leave_at_its_end(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    for part in (b"one ", b"two ", b"three"):
        coalescing.write(part)
    assert peer.available() == b""  # still waiting for the end of this turn
    await asyncio.sleep(0)  # one turn: the flush scheduled in this one has run
    assert peer.available() == b"one two three"


async def test_a_full_buffer_leaves_at_once(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    small = b"x" * 100
    big = b"y" * FLUSH_BYTES
    coalescing.write(small)
    coalescing.write(big)  # reaches FLUSH_BYTES: written now, in this turn
    coalescing.write(b"tail")
    assert peer.available() == small + big
    await asyncio.sleep(0)
    assert peer.available() == b"tail"


async def test_close_and_eof_send_what_waits_first(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.write(b"last words")
    coalescing.write_eof()
    await asyncio.sleep(0)
    assert peer.available() == b"last words"
    assert peer.sock.recv(10) == b""  # the stream ended after them


async def test_writes_after_close_are_dropped(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.write(b"before")
    coalescing.close()
    coalescing.write(b"after")  # the transport is closing: nothing more goes out
    await asyncio.sleep(0)
    assert peer.available() == b"before"
    assert coalescing.is_closing()  # everything else is the wrapped transport's
