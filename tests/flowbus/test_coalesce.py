"""CoalescingTransport on a real socket pair: held writes leave together, in order, none is lost."""

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


async def test_unheld_writes_go_through_at_once(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.write(b"now")
    assert peer.available() == b"now"


async def test_held_writes_leave_at_the_end_of_the_turn(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.hold()
    for part in (b"one ", b"two ", b"three"):
        coalescing.write(part)
    assert peer.available() == b""  # still held
    await asyncio.sleep(0)  # one turn: the release scheduled in this one has run
    assert peer.available() == b"one two three"
    coalescing.write(b" four")  # the turn is over: no longer held
    assert peer.available() == b" four"


async def test_a_full_buffer_leaves_at_once(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    small, big = b"x" * 100, b"y" * FLUSH_BYTES
    coalescing.hold()
    coalescing.write(small)
    coalescing.write(big)  # reaches FLUSH_BYTES: handed on now, in this turn
    coalescing.write(b"tail")
    assert peer.available() == small + big
    await asyncio.sleep(0)
    assert peer.available() == b"tail"


async def test_unhold_never_lets_a_write_overtake_a_held_one(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.hold()
    coalescing.unhold()  # nothing held yet: straight through again
    coalescing.write(b"a")
    assert peer.available() == b"a"
    coalescing.hold()
    coalescing.write(b"b")
    coalescing.unhold()  # "b" is held: "c" must wait behind it
    coalescing.write(b"c")
    assert peer.available() == b""
    await asyncio.sleep(0)
    assert peer.available() == b"bc"


async def test_close_and_eof_send_what_is_held_first(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.hold()
    coalescing.write(b"last words")
    coalescing.write_eof()
    await asyncio.sleep(0)
    assert peer.available() == b"last words"
    assert peer.sock.recv(10) == b""  # the stream ended after them


async def test_held_writes_after_close_are_dropped(pair: tuple[CoalescingTransport, Peer]) -> None:
    coalescing, peer = pair
    coalescing.hold()
    coalescing.write(b"before")
    coalescing.close()
    coalescing.write(b"after")  # the transport is closing: nothing more goes out
    await asyncio.sleep(0)
    assert peer.available() == b"before"
    assert coalescing.is_closing()  # everything else is the wrapped transport's
