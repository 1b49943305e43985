"""Settings of the served bus that the websocket tests rely on: read from the environment, checked."""

from __future__ import annotations

import pytest

from flowbus.config import Settings


def test_environment_values_are_read() -> None:
    """FLOWBUS_* values become typed settings."""
    env = {
        "FLOWBUS_MAX_IN_FLIGHT": "2",
        "FLOWBUS_MAX_CONNECTIONS": "3",
        "FLOWBUS_MAX_MESSAGE_SIZE": "1024",
        "FLOWBUS_CALL_TIMEOUT": "0.2",
        "FLOWBUS_SHUTDOWN_GRACE": "0",
    }
    settings = Settings.load(env=env)
    assert (settings.max_in_flight, settings.max_connections, settings.max_message_size) == (2, 3, 1024)
    assert (settings.call_timeout, settings.shutdown_grace) == (0.2, 0.0)


def test_flags_win_over_environment() -> None:
    """A flag given wins over the environment; an empty environment value is the default."""
    settings = Settings.load({"ws_port": 9}, env={"FLOWBUS_WS_PORT": "8", "FLOWBUS_HTTP_PORT": ""})
    assert (settings.ws_port, settings.http_port) == (9, 8080)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_IN_FLIGHT", "0"),
        ("MAX_CONNECTIONS", "-1"),
        ("MAX_MESSAGE_SIZE", "lots"),
        ("CALL_TIMEOUT", "0"),
        ("CALL_TIMEOUT", "nan"),
        ("SHUTDOWN_GRACE", "-1"),
        ("SHUTDOWN_GRACE", "nan"),
        ("SYNC", "off"),
        ("CACHE_MB", "-1"),
        ("CACHE_MB", "nan"),
        ("EVENT_LOOP", "trio"),
    ],
    ids=[
        "in-flight-zero",
        "connections-negative",
        "size-word",
        "timeout-zero",
        "timeout-nan",
        "grace-negative",
        "grace-nan",
        "sync-off",
        "cache-negative",
        "cache-nan",
        "loop-unknown",
    ],
)
def test_values_that_cannot_work_are_refused(name: str, value: str) -> None:
    """Values that cannot work (NaN included: every call would time out at once) are refused at startup."""
    with pytest.raises(ValueError):
        Settings.load(env={f"FLOWBUS_{name}": value})


def test_a_short_jwt_secret_is_refused_without_being_repeated() -> None:
    """A JWT secret under 32 bytes is refused at startup; the message never shows it."""
    short = "s3cret-" + "x" * 24  # 31 bytes
    with pytest.raises(ValueError, match="at least 32 bytes") as refused:
        Settings.load(env={"FLOWBUS_JWT_SECRET": short})
    assert short not in str(refused.value)
    assert Settings.load(env={"FLOWBUS_JWT_SECRET": short + "x"}).jwt_secret == short + "x"


def test_cache_size_and_event_loop_are_read() -> None:
    settings = Settings.load(env={"FLOWBUS_CACHE_MB": "0.5", "FLOWBUS_EVENT_LOOP": "asyncio"})
    assert settings.cache_bytes == 512 * 1024
    assert settings.event_loop == "asyncio"
