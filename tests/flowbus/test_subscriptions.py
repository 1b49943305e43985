"""SUBSCRIBE over both websocket entries: changes pushed once, in commit order, from either
transport and from flows; resuming with ``since``; filters, namespaces and permissions; the bound
on a connection that does not read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.flowbus.helpers import DEVICE, fails, ok, unique
from tests.support import ENTRIES, Served, http_json, rpc


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def pushed(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` pushed messages (they carry ``subscription``, answers do not)."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
        if "subscription" in message and "event" in message:
            out.append(message)
    return out


async def subscribe(ws: ClientConnection, endpoint: str = DEVICE, **fields: Any) -> dict[str, Any]:
    answer = await rpc(ws, {"method": "SUBSCRIBE", "endpoint": endpoint, **fields})
    assert answer["success"], answer
    return dict(answer["data"])


async def test_changes_from_both_transports_are_pushed_once_in_order(bus: Served, ws: ClientConnection) -> None:
    namespace = unique("ns")
    sub = await subscribe(ws, namespace=namespace)
    assert sub["subscription"].startswith("s-") and isinstance(sub["seq"], int)
    async with bus.connect() as other:
        created = await ok(other, "CREATE", DEVICE, data={"name": "a"}, namespace=namespace)
        await ok(other, "UPDATE", DEVICE, objectid=created["id"], data={"location": "x"}, namespace=namespace)
        headers = {"Authorization": f"Bearer {bus.token}", "Flow-Request-Namespace": namespace}
        url = bus.http_url + "/api/inventory/inventory/device/"
        over_http = await asyncio.to_thread(http_json, url, {"name": "b"}, headers)
        assert over_http["success"], over_http
        await ok(other, "DELETE", DEVICE, objectid=created["id"], namespace=namespace)
    events = await pushed(ws, 4)
    assert [(e["event"], e["data"].get("name")) for e in events] == [
        ("CREATED", "a"),
        ("UPDATED", "a"),
        ("CREATED", "b"),
        ("DELETED", "a"),
    ]
    assert all(e["subscription"] == sub["subscription"] and e["namespace"] == namespace for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and seqs[0] > sub["seq"]


async def test_narrowed_to_an_object_and_by_filters(bus: Served, ws: ClientConnection) -> None:
    namespace = unique("ns")
    one = await ok(ws, "CREATE", DEVICE, data={"name": "one"}, namespace=namespace)
    async with bus.connect() as listener:
        await subscribe(listener, objectid=one["id"], namespace=namespace)
        await subscribe(listener, namespace=namespace, parameters={"filters": {"location": "lab"}})
        await ok(ws, "CREATE", DEVICE, data={"name": "elsewhere", "location": "hall"}, namespace=namespace)
        await ok(ws, "CREATE", DEVICE, data={"name": "in-lab", "location": "lab"}, namespace=namespace)
        await ok(ws, "UPDATE", DEVICE, objectid=one["id"], data={"location": "hall"}, namespace=namespace)
        events = await pushed(listener, 2)
    assert [(e["subscription"], e["data"]["name"]) for e in events] == [("s-2", "in-lab"), ("s-1", "one")]


async def test_resume_with_since_misses_nothing_and_repeats_nothing(bus: Served) -> None:
    namespace = unique("ns")
    async with bus.connect() as writer:
        async with bus.connect() as ws:
            await subscribe(ws, namespace=namespace)
            await ok(writer, "CREATE", DEVICE, data={"name": "seen"}, namespace=namespace)
            (last,) = await pushed(ws, 1)
        for name in ("missed-1", "missed-2"):  # meanwhile, the first connection is gone
            await ok(writer, "CREATE", DEVICE, data={"name": name}, namespace=namespace)
        async with bus.connect() as ws:
            await subscribe(ws, namespace=namespace, parameters={"since": last["seq"]})
            await ok(writer, "CREATE", DEVICE, data={"name": "live"}, namespace=namespace)
            events = await pushed(ws, 3)
    assert [e["data"]["name"] for e in events] == ["missed-1", "missed-2", "live"]


async def test_namespaces_and_permissions(bus: Served, ws: ClientConnection) -> None:
    site = unique("site")
    await ok(
        ws,
        "CREATE",
        "auth/user",
        data={"username": f"u-{site}", "password": "site-password-1", "roles": ["viewer"], "namespaces": [site]},
    )
    async with bus.connect(token=None) as anonymous:
        login = await rpc(
            anonymous,
            {
                "method": "CREATE",
                "endpoint": "auth/token",
                "data": {"username": f"u-{site}", "password": "site-password-1"},
            },
        )
    async with bus.connect(token=login["data"]["token"]) as viewer:
        await fails(viewer, "PERMISSION_DENIED", "SUBSCRIBE", DEVICE, namespace="other")
        await subscribe(viewer, namespace=site)
        await ok(ws, "CREATE", DEVICE, data={"name": "elsewhere"}, namespace="other")
        await ok(ws, "CREATE", DEVICE, data={"name": "here"}, namespace=site)
        (event,) = await pushed(viewer, 1)
        assert event["data"]["name"] == "here"
    async with bus.connect(token=None) as anonymous:
        await fails(anonymous, "AUTH_REQUIRED", "SUBSCRIBE", DEVICE)


async def test_bad_subscriptions(ws: ClientConnection) -> None:
    await fails(ws, "NO_SUCH_ENDPOINT", "SUBSCRIBE", "inventory/nothing")
    await fails(ws, "INVALID_REQUEST", "SUBSCRIBE", DEVICE, parameters={"since": "yesterday"})
    await fails(ws, "INVALID_REQUEST", "SUBSCRIBE", DEVICE, parameters={"filters": ["name"]})
    await fails(ws, "INVALID_REQUEST", "UNSUBSCRIBE", DEVICE, parameters={"subscription": "s-99"})


async def test_unsubscribe_stops_the_events(bus: Served, ws: ClientConnection) -> None:
    namespace = unique("ns")
    first = await subscribe(ws, namespace=namespace)
    second = await subscribe(ws, namespace=namespace)
    answer = await rpc(
        ws, {"method": "UNSUBSCRIBE", "endpoint": DEVICE, "parameters": {"subscription": first["subscription"]}}
    )
    assert answer["data"] == {"subscription": first["subscription"]}
    await ok(ws, "CREATE", DEVICE, data={"name": "after"}, namespace=namespace)
    (event,) = await pushed(ws, 1)
    assert event["subscription"] == second["subscription"]


async def test_flow_executions_push_progress(bus: Served, ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = {
        "name": "progress",
        "startState": "s",
        "states": {
            "s": {"action": "set", "vars": {"a": 1}, "transitions": [{"on": "success", "to": "e"}]},
            "e": {"action": "end"},
        },
    }
    created = await ok(ws, "CREATE", "flows/flow", data=flow, namespace=namespace)
    async with bus.connect() as listener:
        await subscribe(listener, "flows/execution", namespace=namespace)
        await ok(ws, "RUN", "flows/flow", objectid=created["id"], namespace=namespace)
        statuses: list[tuple[str, str]] = []
        while ("PROGRESS", "SUCCESS") not in statuses or ("UPDATED", "SUCCESS") not in statuses:
            (event,) = await pushed(listener, 1)
            statuses.append((event["event"], event["data"]["status"]))
    assert ("CREATED", "RUNNING") in statuses and ("PROGRESS", "RUNNING") in statuses


async def test_a_connection_that_does_not_read_gets_one_overflow_notice(bus: Served) -> None:
    namespace = unique("ns")
    pad = "x" * 1200
    async with bus.connect() as slow, bus.connect() as writer:
        sub = await subscribe(slow, namespace=namespace)
        # the slow client reads nothing while 10,000 events (about 13 MB) are committed
        for start in range(0, 10_000, 500):
            batch = [{"name": f"d{i}", "pad": pad} for i in range(start, start + 500)]
            await ok(writer, "CREATE", DEVICE, data=batch, namespace=namespace)
        await ok(writer, "CREATE", DEVICE, data={"name": "after-all"}, namespace=namespace)
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["event"] != "OVERFLOW":
            messages.extend(await pushed(slow, 1))
        overflow = messages[-1]
        delivered = messages[:-1]
        assert overflow["subscription"] == sub["subscription"]
        assert 0 < len(delivered) < 10_000 and overflow["seq"] == delivered[-1]["seq"]
        await ok(slow, "CREATE", DEVICE, data={"name": "nothing-more"}, namespace=namespace)
        answer = await rpc(
            slow, {"method": "LIST", "endpoint": DEVICE, "namespace": namespace, "parameters": {"limit": 1}}
        )
        assert answer["success"]  # the connection still answers; the subscription has ended
    _ = json


async def test_since_older_than_the_log_answers_gone(bus: Served, ws: ClientConnection) -> None:
    from flowbus.store import SQLiteStore

    await ok(ws, "CREATE", DEVICE, data={"name": "soon-forgotten"}, namespace=unique("ns"))
    store = SQLiteStore(bus.data / "flowbus.db")  # a second process's view of the same store
    await store.open()
    try:
        await store.trim_changes("2999-01-01T00:00:00Z")
        first = await store.first_seq()
    finally:
        await store.close()
    answer = await fails(ws, "GONE", "SUBSCRIBE", DEVICE, parameters={"since": first - 1})
    assert "reload" in answer["message"]
    assert (await subscribe(ws, parameters={"since": first}))["seq"] >= first


def test_subscribe_is_not_a_method_over_http(bus: Served) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        bus.http_url + "/api/inventory/inventory/device/",
        headers={"Authorization": f"Bearer {bus.token}", "Flow-Request-Method": "SUBSCRIBE"},
    )
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("SUBSCRIBE over HTTP was answered")
    except urllib.error.HTTPError as error:
        assert (error.code, orjson.loads(error.read())["errorcode"]) == (405, "METHOD_NOT_SUPPORTED")


async def test_a_narrowed_role_stops_a_live_subscriptions_events(bus: Served, ws: ClientConnection) -> None:
    namespace, role = unique("ns"), unique("watcher")
    await ok(ws, "CREATE", "auth/role", data={"id": role, "rules": [{"endpoints": "inventory/*", "methods": ["OPEN"]}]})
    user = {"username": f"u-{role}", "password": "watcher-password-1", "roles": [role]}
    await ok(ws, "CREATE", "auth/user", data=user)
    async with bus.connect(token=None) as anonymous:
        credentials = {"username": user["username"], "password": user["password"]}
        login = await rpc(anonymous, {"method": "CREATE", "endpoint": "auth/token", "data": credentials})
    async with bus.connect(token=login["data"]["token"]) as watcher:
        await subscribe(watcher, namespace=namespace)
        await ok(ws, "CREATE", DEVICE, data={"name": "allowed"}, namespace=namespace)
        (event,) = await pushed(watcher, 1)
        assert event["data"]["name"] == "allowed"
        await ok(
            ws, "UPDATE", "auth/role", objectid=role, data={"rules": [{"endpoints": "flows/*", "methods": ["OPEN"]}]}
        )
        for _ in range(500):  # the role's change reaches the auth engine through the change feed
            check = await rpc(watcher, {"method": "OPEN", "endpoint": DEVICE, "objectid": "x", "namespace": namespace})
            if check.get("errorcode") == "PERMISSION_DENIED":
                break
            await asyncio.sleep(0.01)
        await ok(ws, "CREATE", DEVICE, data={"name": "no-longer-allowed"}, namespace=namespace)
        listed = {"method": "LIST", "endpoint": "flows/flow", "namespace": namespace}
        answer = await rpc(watcher, listed)  # the next message is this answer: nothing was pushed
        assert "subscription" not in answer and answer["status"] == 0


async def test_changes_made_by_another_process_are_pushed(tmp_path: Any) -> None:
    from tests.support import serve

    first = serve(tmp_path / "a")
    try:
        second = serve(tmp_path / "b", "--data", str(first.data))
        try:
            namespace = unique("ns")
            async with second.connect() as listener, first.connect() as writer:
                await subscribe(listener, namespace=namespace)
                for name in ("one", "two", "three"):
                    await ok(writer, "CREATE", DEVICE, data={"name": name}, namespace=namespace)
                events = await pushed(listener, 3)
            assert [e["data"]["name"] for e in events] == ["one", "two", "three"]
        finally:
            second.stop()
    finally:
        first.stop()


async def test_a_revoked_token_ends_its_subscriptions(bus: Served, ws: ClientConnection) -> None:
    namespace = unique("ns")
    user = {"username": unique("revoked"), "password": "revoked-password-1", "roles": ["viewer"]}
    await ok(ws, "CREATE", "auth/user", data=user)
    async with bus.connect(token=None) as anonymous:
        credentials = {"username": user["username"], "password": user["password"]}
        login = await rpc(anonymous, {"method": "CREATE", "endpoint": "auth/token", "data": credentials})
    async with bus.connect(token=login["data"]["token"]) as watcher:
        sub = await subscribe(watcher, namespace=namespace)
        await ok(ws, "DELETE", "auth/token", objectid=login["data"]["id"])
        await ok(ws, "CREATE", DEVICE, data={"name": "after-revocation"}, namespace=namespace)
        (ended,) = await pushed(watcher, 1)
    assert (ended["event"], ended["subscription"], ended["errorcode"]) == ("ENDED", sub["subscription"], "AUTH_FAILED")


async def test_the_close_policy_drops_a_connection_that_does_not_read(tmp_path: Any, entry: str) -> None:
    from websockets.exceptions import ConnectionClosed

    from tests.support import serving

    namespace = unique("ns")
    with serving(tmp_path, env={"FLOWBUS_SUBSCRIBER_OVERFLOW": "close"}, entry=entry) as served:
        async with served.connect() as slow, served.connect() as writer:
            await subscribe(slow, namespace=namespace)
            batch = [{"name": f"d{i}", "pad": "x" * 1200} for i in range(500)]
            for _ in range(20):  # 10,000 events the slow client does not read
                await ok(writer, "CREATE", DEVICE, data=batch, namespace=namespace)
            with pytest.raises(ConnectionClosed):
                while True:  # what was sent before the drop, then the end of the connection
                    await asyncio.wait_for(slow.recv(), 30)
            answer = await rpc(writer, {"method": "LIST", "endpoint": DEVICE, "namespace": namespace})
            assert answer["page"]["total"] == 10_000  # the writer and the bus go on


ODD = ["sw.1", "a b", "50%", "x*", "y>", "tab\there", "nl\nhere", "_", "%41", "ü.ß", ">", "*", ".", ""]


async def test_every_subscribe_is_answered_whatever_its_fields(bus: Served, ws: ClientConnection) -> None:
    """SUBSCRIBE with an objectid, namespace or filter holding characters that subjects escape (or
    that are no valid id at all) is answered, an error where it cannot be served, and a change to
    such an object reaches its subscriber; nothing is left unretrieved in the bus's log."""
    for odd in ODD:
        for fields in (
            {"objectid": odd},
            {"namespace": odd},
            {"parameters": {"filters": {"name": odd}}},
            {"parameters": {"filters": {odd: "x"}}},
            {"parameters": {"since": odd}},
        ):
            answer = await rpc(ws, {"method": "SUBSCRIBE", "endpoint": DEVICE, **fields})
            assert answer["success"] or answer["errorcode"] == "INVALID_REQUEST", (fields, answer)
            if answer["success"]:
                unsubscribed = await rpc(
                    ws,
                    {
                        "method": "UNSUBSCRIBE",
                        "endpoint": DEVICE,
                        "parameters": {"subscription": answer["data"]["subscription"]},
                    },
                )
                assert unsubscribed["success"], unsubscribed
        answer = await rpc(ws, {"method": "UNSUBSCRIBE", "endpoint": DEVICE, "parameters": {"subscription": odd}})
        assert answer["errorcode"] == "INVALID_REQUEST", answer
    namespace = "site." + unique("a")
    sub = await subscribe(ws, namespace=namespace)
    async with bus.connect() as other:  # the writer's answer and the pushed event arrive in either order
        created = await ok(other, "CREATE", DEVICE, data={"name": "dotted"}, namespace=namespace)
    [event] = await pushed(ws, 1)
    assert (event["subscription"], event["objectid"]) == (sub["subscription"], created["id"])
    assert "never retrieved" not in bus.log() and "Traceback" not in bus.log()


async def test_an_object_whose_id_holds_a_dot_is_followed(bus: Served, ws: ClientConnection) -> None:
    """A subscription to one object whose id holds a dot gets that object's changes."""
    namespace = unique("ns")
    objectid = unique("sw") + ".1"
    await ok(ws, "CREATE", DEVICE, data={"id": objectid, "name": "dot"}, namespace=namespace)
    sub = await subscribe(ws, objectid=objectid, namespace=namespace)
    async with bus.connect() as other:
        await ok(other, "UPDATE", DEVICE, objectid=objectid, data={"location": "lab"}, namespace=namespace)
    [event] = await pushed(ws, 1)
    assert (event["subscription"], event["objectid"], event["event"]) == (sub["subscription"], objectid, "UPDATED")
