"""The pure handshake rules shared by both websocket entries, and their one connection cap."""

from __future__ import annotations

from pathlib import Path

from flowbus.config import Settings
from flowbus.handshake import Connections, Handshake, connection_defaults


def test_connections_cap_takes_and_gives_back_places() -> None:
    """The cap refuses a place past its limit and takes one again once one is released."""
    connections = Connections(2)
    assert connections.take() and connections.take()
    assert not connections.take()
    connections.release()
    assert connections.take()
    assert connections.count == 2


def test_handshake_rules() -> None:
    """Shutting down answers 503, a foreign Origin 403, an unknown Host without auth 403."""
    rules = Handshake(Settings.load({"data": Path("unused"), "no_auth": True}, env={}))
    closing = rules.refusal(True, None, None)
    assert closing is not None and closing.status == 503
    origin = rules.refusal(False, "http://evil.example", "127.0.0.1:8765")
    assert origin is not None and origin.status == 403
    host = rules.refusal(False, None, "evil.example")
    assert host is not None and host.status == 403
    assert rules.refusal(False, "http://127.0.0.1:8765", "127.0.0.1:8765") is None


def test_connection_defaults_read_endpoint_and_token() -> None:
    """The path names the default endpoint; ?token= or a bearer header the default token."""
    assert connection_defaults("/inventory/device?token=abc", {}) == ("inventory/device", "abc")
    assert connection_defaults("/", {"Authorization": "Bearer xyz"}) == (None, "xyz")
