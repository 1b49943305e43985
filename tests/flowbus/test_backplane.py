"""The backplane: subjects, their escaping, pattern matching and a failing handler's isolation."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from flowbus.backplane import Event, LocalBackplane, subject, token, untoken
from flowbus.feed import change_of, event_of
from flowbus.store.base import Change


def _recorder(backplane: LocalBackplane, pattern: str) -> list[str]:
    got: list[str] = []
    backplane.subscribe(pattern, lambda subj, event: got.append(subj))
    return got


def _event(namespace: str = "", endpoint: str = "inventory/device", objectid: str = "d1") -> Event:
    return Event("UPDATED", endpoint, objectid, namespace, {"id": objectid}, seq=3, version=2)


@pytest.mark.parametrize(
    "value",
    ["", "_", "__", "a.b", "x*y", "a>b", "100%", "%2E", "with space", "tab\there", "nl\n", "\u00a0nbsp", "ok:id-1"],
)
def test_tokens_round_trip(value: str) -> None:
    """Every value maps to one token without '.', '*', '>' or whitespace, and back to itself."""
    written = token(value)
    assert written and not any(c in written for c in ".*> \t\n\u00a0")
    assert untoken(written) == value


def test_distinct_values_give_distinct_tokens() -> None:
    """Escaping never makes two different values share a token."""
    values = ["", "_", "%5F", ".", "%2E", "a b", "a%20b"]
    assert len({token(v) for v in values}) == len(values)


def test_subject_shape() -> None:
    """A subject is namespace, endpoint and object id; the default namespace is '_'."""
    assert subject("", "inventory/device", "sw.1") == "_.inventory/device.sw%2E1"
    assert _event("site-a", objectid="x").subject == "site-a.inventory/device.x"


def test_exact_and_wildcard_patterns_match_as_in_nats() -> None:
    """'*' matches one token, '>' one or more, and an exact pattern only its subject."""
    backplane = LocalBackplane()
    exact = _recorder(backplane, "_.inventory/device.d1")
    star = _recorder(backplane, "*.inventory/device.*")
    tail = _recorder(backplane, "_.>")
    everything = _recorder(backplane, ">")
    other = _recorder(backplane, "_.auth/user.*")
    for event in (_event(), _event("n1"), _event(objectid="d2")):
        backplane.publish(event.subject, event)
    assert exact == ["_.inventory/device.d1"]
    assert star == ["_.inventory/device.d1", "n1.inventory/device.d1", "_.inventory/device.d2"]
    assert tail == ["_.inventory/device.d1", "_.inventory/device.d2"]
    assert len(everything) == 3
    assert other == []


def test_star_does_not_match_across_tokens_nor_empty() -> None:
    """'*' never stands for two tokens, and '>' needs at least one token."""
    backplane = LocalBackplane()
    star = _recorder(backplane, "_.*")
    tail = _recorder(backplane, "_.inventory/device.d1.>")
    event = _event()
    backplane.publish(event.subject, event)
    assert star == [] and tail == []


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a*.b", "a.b>", "a b.c", ">.x"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    """A malformed pattern raises ValueError when subscribed, not later."""
    with pytest.raises(ValueError, match="invalid subject pattern"):
        LocalBackplane().subscribe(pattern, lambda subj, event: None)


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    """After its unsubscribe, a handler gets nothing; other handlers on the same subject still do."""
    backplane = LocalBackplane()
    first: list[Event] = []
    second: list[Event] = []
    drop = backplane.subscribe("_.inventory/device.d1", lambda subj, event: first.append(event))
    backplane.subscribe("_.inventory/device.d1", lambda subj, event: second.append(event))
    drop_wild = backplane.subscribe(">", lambda subj, event: first.append(event))
    drop()
    drop()
    drop_wild()
    event = _event()
    backplane.publish(event.subject, event)
    assert first == [] and second == [event]


def test_a_failing_handler_is_logged_and_others_still_get_the_event(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises does not stop the publish nor reach the publisher."""
    backplane = LocalBackplane()

    def boom(subj: str, event: Event) -> None:
        raise RuntimeError("handler bug")

    backplane.subscribe(">", boom)
    got = _recorder(backplane, ">")
    event = _event()
    with caplog.at_level(logging.ERROR, logger="flowbus.backplane"):
        backplane.publish(event.subject, event)
    assert got == [event.subject]
    assert "handler bug" in caplog.text


def test_a_handler_may_unsubscribe_while_being_delivered() -> None:
    """Unsubscribing during a publish neither skips nor repeats another handler."""
    backplane = LocalBackplane()
    got: list[str] = []
    drops: list[Callable[[], None]] = []

    def once(subj: str, event: Event) -> None:
        got.append("once")
        drops[0]()

    drops.append(backplane.subscribe("_.inventory/device.d1", once))
    backplane.subscribe("_.inventory/device.d1", lambda subj, event: got.append("always"))
    for _ in range(2):
        event = _event()
        backplane.publish(event.subject, event)
    assert got == ["once", "always", "always"]


def test_a_stored_change_survives_the_trip_through_an_event() -> None:
    """event_of and change_of are inverse for a stored change (but for its commit time)."""
    change = Change(
        7, "UPDATED", "inventory/device", "n", "d.1", 3, {"id": "d.1", "version": 3}, "2026-01-01T00:00:00Z"
    )
    event = event_of(change)
    assert event.subject == "n.inventory/device.d%2E1"
    assert change_of(event) == Change(7, "UPDATED", "inventory/device", "n", "d.1", 3, change.data, "")
    assert change_of(Event("PROGRESS", "inventory/device", "d.1", "n", {"done": 1})) is None


def test_wildcard_subscribers_hear_an_event_in_subscription_order() -> None:
    """Patterns of one endpoint's objects and broader ones are told in the order they subscribed."""
    backplane = LocalBackplane()
    heard: list[str] = []
    device = token("inventory/device")
    for name, pattern in [
        ("all", ">"),
        ("devices", f"*.{device}.*"),
        ("any-three", "*.*.*"),
        ("again", f"*.{device}.*"),
    ]:

        def hear(subject: str, event: Event, name: str = name) -> None:
            heard.append(name)

        backplane.subscribe(pattern, hear)
    backplane.subscribe(f"*.{token('flows/flow')}.*", lambda subject, event: heard.append("flows"))
    event = _event()
    backplane.publish(event.subject, event)
    assert heard == ["all", "devices", "any-three", "again"]


def test_subscriptions_made_or_dropped_between_events_are_heard_from_the_next_one() -> None:
    """Each event is matched against the subscriptions of the moment, in subscription order."""
    backplane = LocalBackplane()
    heard: list[str] = []
    device = token("inventory/device")
    backplane.subscribe(f"*.{device}.*", lambda subject, event: heard.append("devices"))
    event = _event()
    backplane.publish(event.subject, event)
    drop_all = backplane.subscribe(">", lambda subject, event: heard.append("all"))
    backplane.subscribe(f"_.{device}.*", lambda subject, event: heard.append("default namespace"))
    backplane.publish(event.subject, event)
    drop_all()
    other = _event("n1")
    backplane.publish(other.subject, other)
    assert heard == ["devices", "devices", "all", "default namespace", "devices"]
