"""Tokens (JWT, HS256), API keys and password hashes: the cryptography of the auth engine.

JWTs are signed HS256 with a secret kept in the data directory (mode 0600) or given by
``FLOWBUS_JWT_SECRET``. Decoding pins the algorithm, so ``alg: none`` and RS/HS confusion are
refused, and requires ``exp``, ``iat``, ``jti`` and ``sub``. Passwords are hashed with scrypt
(memory-hard, in the standard library). API keys are random, shown once, and stored as SHA-256
(they are long random secrets, so a fast hash is enough and keeps each call cheap).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from jwt.types import Options

from flowbus.errors import AuthFailed

__all__ = [
    "APIKEY_PREFIX",
    "LEEWAY",
    "Claims",
    "TokenIssuer",
    "hash_apikey",
    "hash_password",
    "load_secret",
    "new_apikey",
    "split_apikey",
    "verify_password",
]

ALGORITHM = "HS256"
APIKEY_PREFIX = "fbk_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_REQUIRED = ["exp", "iat", "jti", "sub"]
_ALGORITHMS = [ALGORITHM]
_OPTIONS: Options = {"require": _REQUIRED}
LEEWAY = 5
"""Seconds a token is still accepted after its ``exp``, for clocks that differ a little."""


@dataclass(slots=True, frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    token_id: str
    expires: float
    roles: tuple[str, ...] = ()
    namespaces: tuple[str, ...] | None = None


@dataclass(slots=True)
class TokenIssuer:
    """Issues and verifies the bus's JWTs.

    Args:
        secret: the HS256 key (never shown in reprs).
        lifetime: seconds a token is valid.
    """

    secret: bytes = field(repr=False)
    lifetime: float = 3600.0

    def issue(self, subject: str, roles: list[str], namespaces: list[str] | None) -> tuple[str, Claims]:
        """Return a new signed token and its claims."""
        now = int(time.time())
        claims = Claims(subject, str(uuid.uuid4()), now + self.lifetime, tuple(roles), _tuple(namespaces))
        payload: dict[str, Any] = {
            "sub": subject,
            "jti": claims.token_id,
            "iat": now,
            "exp": int(claims.expires),
            "roles": list(roles),
            "ns": namespaces,
        }
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM), claims

    def verify(self, token: str) -> Claims:
        """Check the signature, the algorithm and the required claims.

        Raises:
            AuthFailed: the token is malformed, tampered with, expired or of another algorithm.
        """
        try:
            payload = jwt.decode(token, self.secret, algorithms=_ALGORITHMS, options=_OPTIONS, leeway=LEEWAY)
        except jwt.ExpiredSignatureError:
            raise AuthFailed("The token has expired") from None
        except jwt.PyJWTError:
            raise AuthFailed("The token is not valid") from None
        roles, ns = payload.get("roles", []), payload.get("ns")
        if not isinstance(roles, list) or not (ns is None or isinstance(ns, list)):
            raise AuthFailed("The token is not valid")
        return Claims(str(payload["sub"]), str(payload["jti"]), float(payload["exp"]), tuple(roles), _tuple(ns))


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def load_secret(data_dir: Path, given: str | None) -> bytes:
    """The JWT secret: ``given`` if set, else the one kept in ``data_dir`` (made on first start, 0600)."""
    if given:
        return given.encode()
    path = data_dir / "jwt.secret"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a random salt (slow on purpose: run it off the event loop)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Check a password against its hash, in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_apikey() -> tuple[str, str]:
    """Return a new API key and its public prefix (the part shown in listings)."""
    prefix = secrets.token_hex(4)
    return f"{APIKEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def split_apikey(key: str) -> str | None:
    """The prefix of an API key, or None if ``key`` is not shaped like one."""
    if not key.startswith(APIKEY_PREFIX):
        return None
    prefix, sep, rest = key[len(APIKEY_PREFIX) :].partition("_")
    return prefix if sep and len(prefix) == 8 and rest else None


def hash_apikey(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
