"""Keepalive and the write watchdog of one websocket connection, on one periodic timer.

Both websocket entries use it (the websocket port and the gateway's ``/ws``), so they behave the
same way:

- a ping every ``ping_interval`` seconds; a peer that has not answered it ``ping_timeout``
  seconds later is closed with 1011;
- sends that stay pending, with none ending, for ``write_timeout`` seconds (a client that
  stopped reading) drop the connection, and its calls are cancelled.

Nothing happens per message: the transport counts its sends (:meth:`Keepalive.sending`,
:meth:`Keepalive.sent`) and hands over pongs; one timer, every quarter of the shortest of the
three settings, judges them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from flowbus.config import Settings

__all__ = ["Keepalive"]

logger = logging.getLogger("flowbus.keepalive")


class Keepalive:
    """Keeps one connection alive and honest.

    Args:
        settings: ``ping_interval``, ``ping_timeout`` and ``write_timeout``.
        ping: sends a ping with the given payload (never raises).
        silent: closes the connection whose peer did not answer a ping (1011).
        stalled: drops the connection whose sends stayed blocked.
    """

    __slots__ = (
        "_loop", "_ping", "_ping_interval", "_ping_sent", "_ping_timeout", "_seen", "_send_ping",
        "_silent", "_stalled", "_stalled_for", "_tick", "_timer", "_write_timeout", "pending", "done",
    )  # fmt: skip

    def __init__(
        self, settings: Settings, ping: Callable[[bytes], None], silent: Callable[[], None], stalled: Callable[[], None]
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._send_ping, self._silent, self._stalled = ping, silent, stalled
        self._write_timeout = settings.write_timeout
        self._ping_interval = settings.ping_interval
        self._ping_timeout = settings.ping_timeout
        self._tick = min(settings.write_timeout, settings.ping_interval, settings.ping_timeout) / 4
        self.pending = 0
        """Sends under way."""
        self.done = 0
        """Sends ended."""
        self._seen = 0  # ``done`` at the last tick
        self._stalled_for = 0.0  # seconds sends have been pending with none ending
        self._ping = b""  # the payload of the ping not answered yet, if any
        self._ping_sent = self._loop.time()  # when the last ping went (or the connection opened)
        self._timer = self._loop.call_later(self._tick, self._check)

    def sending(self) -> None:
        """A send started (or writing blocked)."""
        self.pending += 1

    def sent(self) -> None:
        """A send ended (or writing resumed)."""
        self.pending -= 1
        self.done += 1

    def ponged(self, data: bytes) -> None:
        """A pong came: it answers the ping it echoes."""
        if self._ping and data == self._ping:
            self._ping = b""

    def stop(self) -> None:
        """The connection is gone."""
        self._timer.cancel()

    def _check(self) -> None:
        if self._sends_stalled():
            logger.info("dropping a connection whose writes stayed blocked for %s s", self._write_timeout)
            self._stalled()
            return
        now = self._loop.time()
        if self._ping and now - self._ping_sent >= self._ping_timeout:
            logger.info("closing a connection whose peer did not answer a ping within %s s", self._ping_timeout)
            self._ping = b""
            self._silent()
            return
        if not self._ping and now - self._ping_sent >= self._ping_interval:
            self._ping = str(now).encode()
            self._ping_sent = now
            self._send_ping(self._ping)
        self._timer = self._loop.call_later(self._tick, self._check)

    def _sends_stalled(self) -> bool:
        if self.pending and self.done == self._seen:
            self._stalled_for += self._tick
            return self._stalled_for >= self._write_timeout
        self._seen = self.done
        self._stalled_for = 0.0
        return False
