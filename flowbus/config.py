"""Settings, read in one place: command-line flags, then ``FLOWBUS_*`` environment, then defaults."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["MIN_JWT_SECRET_BYTES", "STORE_SCHEMES", "Settings"]

MIN_JWT_SECRET_BYTES = 32
STORE_SCHEMES = ("postgresql://", "postgres://")
"""How a ``store`` URL that selects the PostgreSQL store begins."""


def _apps(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _setting(default: Any, parse: Callable[[str], Any], help: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"parse": parse, "help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a served bus can be told. Each field ``x`` reads ``FLOWBUS_X`` from the environment."""

    host: str = _setting("127.0.0.1", str, "address to listen on")
    ws_port: int = _setting(8765, int, "websocket port (0 picks a free one)")
    http_port: int = _setting(8080, int, "HTTP gateway port (0 picks a free one)")
    data: Path = _setting(Path("flowbus-data"), Path, "data directory (SQLite file)")
    apps: tuple[str, ...] = _setting((), _apps, "extra applications, MODULE:ATTR (comma-separated in env)")
    no_builtin_apps: bool = _setting(False, _bool, "do not enable the built-in applications")
    max_message_size: int = _setting(1 << 20, int, "largest websocket message or HTTP body, bytes")
    max_in_flight: int = _setting(128, int, "calls in flight per connection before reading pauses")
    max_connections: int = _setting(16384, int, "open websocket connections before new ones get 503")
    call_timeout: float = _setting(30.0, float, "seconds an endpoint may take before TIMEOUT")
    shutdown_grace: float = _setting(10.0, float, "seconds in-flight calls get to finish on shutdown")
    store: str = _setting(
        "", str, "where objects are kept: empty for the SQLite file in the data dir, or a postgresql:// URL"
    )
    subscriber_backlog: int = _setting(
        1 << 20, int, "unsent bytes of a connection past which its subscriptions end with OVERFLOW"
    )
    subscriber_overflow: str = _setting(
        "notify", str, "past the backlog: notify (end the subscriptions with OVERFLOW) or close the connection"
    )
    write_timeout: float = _setting(30.0, float, "seconds a websocket's writes may stay blocked before it is dropped")
    ping_interval: float = _setting(20.0, float, "seconds between the keepalive pings of a websocket connection")
    ping_timeout: float = _setting(20.0, float, "seconds a websocket peer has to answer a ping before it is closed")
    sync: str = _setting("full", str, "SQLite synchronous mode: full (power-loss safe) or normal")
    change_retention: float = _setting(
        7 * 86400.0, float, "seconds the change log keeps a change (resuming from older ones answers GONE)"
    )
    flow_concurrency: int = _setting(64, int, "flow executions running at once per process; the rest wait QUEUED")
    cache_mb: float = _setting(64.0, float, "MiB of objects kept in memory for reads by id (0: none)")
    log_level: str = _setting("info", str, "log level: debug, info, warning, error")
    event_loop: str = _setting("auto", str, "event loop: auto (uvloop when installed), uvloop or asyncio")
    no_auth: bool = _setting(False, _bool, "INSECURE: let every call in without credentials")
    jwt_secret: str | None = _setting(None, str, "JWT signing secret (default: kept in the data dir)", secret=True)
    token_lifetime: float = _setting(3600.0, float, "seconds a token is valid")
    admin_password: str | None = _setting(None, str, "password of 'admin' made on first start", secret=True)
    allowed_origins: tuple[str, ...] = _setting((), _apps, "browser Origins allowed to open websockets")
    cors_origins: tuple[str, ...] = _setting((), _apps, "Origins the HTTP gateway allows by CORS")
    allowed_hosts: tuple[str, ...] = _setting(
        (), _apps, "without authentication: Host names answered besides IP addresses and localhost (*: any)"
    )
    login_failures_per_user: int = _setting(5, int, "failed logins per username per window")
    login_failures_per_address: int = _setting(20, int, "failed logins per client address per window")
    login_window: float = _setting(60.0, float, "seconds of the failed-login window")

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings: a flag given (not None) wins over ``FLOWBUS_<NAME>``, which wins over the default.

        Raises:
            ValueError: an environment value cannot be read as its setting's type.
        """
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if flags.get(f.name) is not None:
                values[f.name] = flags[f.name]
                continue
            raw = env.get(f"FLOWBUS_{f.name.upper()}")
            if raw is not None and raw != "":
                try:
                    values[f.name] = f.metadata["parse"](raw)
                except ValueError:
                    raise ValueError(f"FLOWBUS_{f.name.upper()}={raw!r} is not a valid {f.name}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError for values that cannot work."""
        if self.store and not self.store.startswith(STORE_SCHEMES):
            raise ValueError("store must be empty (the SQLite file in the data dir) or a postgresql:// URL")
        if self.sync.lower() not in {"full", "normal"}:
            raise ValueError("sync must be 'full' or 'normal'")
        if self.subscriber_overflow not in {"notify", "close"}:
            raise ValueError("subscriber_overflow must be 'notify' or 'close'")
        if self.event_loop not in {"auto", "uvloop", "asyncio"}:
            raise ValueError("event_loop must be 'auto', 'uvloop' or 'asyncio'")
        for name in ("max_message_size", "max_in_flight", "max_connections", "flow_concurrency", "subscriber_backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.cache_mb >= 0:
            raise ValueError("cache_mb must not be negative")
        if not (self.call_timeout > 0 and self.shutdown_grace >= 0):  # written so that NaN fails too
            raise ValueError("call_timeout must be positive and shutdown_grace not negative")
        for name in ("write_timeout", "ping_interval", "ping_timeout"):
            if not getattr(self, name) > 0:  # written so that NaN fails too
                raise ValueError(f"{name} must be positive")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            # the value itself is never repeated: it may be the real secret, one character short
            raise ValueError(
                f"jwt_secret must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256 wants a key as long as its"
                " hash, RFC 7518 section 3.2): e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )

    @property
    def database(self) -> Path:
        return Path(self.data) / "flowbus.db"

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_mb * (1 << 20))

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of a setting, for the CLI."""
        text: str = next(f.metadata["help"] for f in fields(cls) if f.name == name)
        return text
