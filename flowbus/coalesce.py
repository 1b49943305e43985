"""Fewer, larger socket writes for a connection that answers a burst of calls.

A client that pipelines calls sends them in bursts, and the bus reads a burst's messages one
after the other in one turn of the event loop, answering most of them at once. Written one by
one, every answer is a system call and, on a local network, a packet and a wake-up of the
client (which then sends its next calls in smaller bursts). While its reader has asked it to
:meth:`~CoalescingTransport.hold` writes, a :class:`CoalescingTransport` keeps them and hands
them to the real transport together at the end of the turn, or as soon as :data:`FLUSH_BYTES`
wait, so an answer never waits behind more than that. Any other write (the answer of a call
that had to wait, a ping) goes through at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["FLUSH_BYTES", "CoalescingTransport"]

FLUSH_BYTES = 8192
"""Bytes that may be held; the write that reaches them is handed on at once, with what waits.

Large enough to merge a burst's answers into a few writes (most of the saving), small enough
that a client gets the first answers of a long burst while the bus makes the rest."""


class CoalescingTransport:
    """Wraps a transport; holds writes from :meth:`hold` to the end of the event loop's turn.

    Everything but writing, closing and ending the stream goes to the wrapped transport as it is.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self._holding = False
        self._releasing = False  # a release() is scheduled
        self._waiting: list[bytes] = []
        self._size = 0

    def hold(self) -> None:
        """Keep what is written from now to the end of this turn of the event loop."""
        self._holding = True

    def unhold(self) -> None:
        """Write straight through again, unless something is held already (then at the end of
        the turn, so that nothing overtakes it)."""
        if not self._releasing:
            self._holding = False

    def release(self) -> None:
        """Hand on what was held; write straight through again."""
        self._holding = self._releasing = False
        self.flush()

    def write(self, data: bytes) -> None:
        if not self._holding:
            self.transport.write(data)
            return
        if not self._releasing:
            self._releasing = True
            self._loop.call_soon(self.release)
        self._waiting.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand what waits to the transport now (dropped if it is already closing)."""
        waiting, self._waiting, self._size = self._waiting, [], 0
        if waiting and not self.transport.is_closing():
            self.transport.writelines(waiting)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
