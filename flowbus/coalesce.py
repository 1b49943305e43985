"""Fewer, larger socket writes for connections that answer many calls at once.

A client that pipelines calls sends them in bursts, and the bus answers a whole burst in one turn
of the event loop. Written one by one, every answer is a system call and, on a local network,
a packet and a wake-up of the client. :class:`CoalescingTransport` keeps the writes of one turn
and hands them to the real transport together at the end of the turn, or as soon as
:data:`FLUSH_BYTES` are waiting, so an answer never waits behind more than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["FLUSH_BYTES", "CoalescingTransport"]

FLUSH_BYTES = 8192
"""Bytes that may wait for the end of the turn; the write that reaches them flushes at once.

Large enough to merge a burst's answers into a few writes (most of the saving), small enough
that a client gets the first answers of a long burst while the bus makes the rest."""


class CoalescingTransport:
    """Wraps a transport; ``write`` keeps data for the end of the event loop's turn.

    Everything but writing, closing and ending the stream goes to the wrapped transport as it is.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._waiting: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._end_of_turn)
        self._waiting.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand what waits to the transport now (dropped if it is already closing)."""
        waiting, self._waiting, self._size = self._waiting, [], 0
        if waiting and not self.transport.is_closing():
            self.transport.writelines(waiting)

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
