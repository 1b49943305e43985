"""Conditional writes: the one compare-and-set loop every store makes its patches with.

A patch without ``expect`` is merged on the version the store read, and written only if the
object is still at that version. When another writer came between the read and the write, the
store's write raises :class:`Moved` and the loop reads, merges and validates again, a bounded
number of times. With ``expect``, the caller asked for that version: a move is CONFLICT at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flowbus.errors import Conflict, DoesNotExist

__all__ = ["Moved", "check_version", "compare_and_set", "retry_moved"]

T = TypeVar("T")


class Moved(Conflict):
    """A compare-and-set write found the object at another version than the one it was merged
    on: the store reads, merges and validates it again. Should it ever reach a caller, it is a
    CONFLICT like any other."""


def check_version(current: dict[str, Any], expect: int | None) -> None:
    """Refuse CONFLICT unless ``expect`` is None or the version of ``current``."""
    version = current.get("version", 1)
    if expect is not None and version != expect:
        raise Conflict(f"Object {current.get('id')!r} has changed: its version is {version}, not {expect}")


async def retry_moved(attempt: Callable[[], Awaitable[T]], *, tries: int, gave_up: str) -> T:
    """Call ``attempt`` (a read, a merge and a write) again each time it raises :class:`Moved`,
    at most ``tries`` times in all, and answer what it answers; then refuse CONFLICT (``gave_up``)."""
    for _ in range(tries):
        try:
            return await attempt()
        except Moved:
            continue  # another writer came between the read and the write: read and merge again
    raise Conflict(gave_up)


async def compare_and_set(
    read: Callable[[], Awaitable[dict[str, Any] | None]],
    write: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    objectid: str,
    *,
    expect: int | None,
    base: dict[str, Any] | None,
    tries: int,
) -> dict[str, Any]:
    """Patch one object by compare and set; answer the object as written.

    Args:
        read: reads the object as it is now (None when there is none).
        write: merges the patch on the object it is given, validates it and writes it only if
            the object is still at that version; raises :class:`Moved` when it is not.
        objectid: the object's id, for the messages.
        expect: the version the caller requires, or None for the latest.
        base: the object as the caller read it: used instead of a first read when it is at
            version ``expect`` (the write still checks the version).
        tries: how many times to read, merge and write before giving up.

    Raises:
        DoesNotExist: there is no such object.
        Conflict: the object is not at version ``expect``, or kept moving ``tries`` times.
    """
    known = base if base is not None and expect is not None and base.get("version") == expect else None

    async def attempt() -> dict[str, Any]:
        nonlocal known
        current = known if known is not None else await read()
        known = None  # a retry reads the object again
        if current is None:
            raise DoesNotExist(f"Object {objectid!r} does not exist")
        check_version(current, expect)
        try:
            return await write(current)
        except Moved:
            if expect is not None:
                raise Conflict(f"Object {objectid!r} has changed: its version is no longer {expect}") from None
            raise

    return await retry_moved(
        attempt, tries=tries, gave_up=f"Object {objectid!r} kept changing while it was being written; try again"
    )
