"""The Flux REST API (``/flux-api/``) against a served bus: the seed document's own example
requests, sent as the document writes them (its host, port and context ids replaced by the bus's,
a token added), answered as the document says; then its filters, credentials and refusals.

Flows are set up through the native API; the Flux calls then reach them by name and context id.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import xmltodict
from websockets.asyncio.client import ClientConnection
from yarl import URL

from tests.endpoints.flows.helpers import settle
from tests.flowbus.helpers import ok, unique
from tests.support import ADMIN_PASSWORD, Served

EXECUTION = "flows/execution"
FLOW = "flows/flow"

# -- the document's examples, verbatim ----------------------------------------------------------

EXECUTE = r"""curl -X POST \
  'http://<host>:<port>/flux-api/execute?packageName=examples&fluxName=flux.ProcessData' \
  -H 'Accept: application/json' \
  -H 'Content-Type: application/json' \
  -d '{
    "input": {
      "order": {
        "productId": "productA",
        "quantity": 2
       }
    },
    "tags": [
        "invoke"
    ]
}'"""

TERMINATE = r"""curl -X DELETE \
  'http://localhost:8080/flux-api/terminate?contextId=32' \
  -H 'Accept: application/json'"""

EVENT = r"""curl -X POST \
  http://localhost:8080/flux-api/event \
  -H 'Accept: application/json' \
  -H 'Content-Type: application/json' \
  -d '{
  "event": "done",
  "input": {
    "greeting": "hello"
  },
  "tags": [
    "users"
  ]
}'"""

CONTEXTS = r"""curl -X GET \
  'http://localhost:8080/flux-api/contexts?status=WAITING_UNTIL&fluxName=flux.ProcessExternalEvent' \
  -H 'Accept: application/json'"""

CONTEXT = r"""curl -X GET \
  'http://localhost:8080/flux-api/context?contextId=209' \
  -H 'Accept: application/json'"""

STATE = r"""curl -X GET \
  'http://localhost:8080/flux-api/context/state?contextId=217&stateName=Start_State' \
  -H 'Accept: application/json'"""

ADD_TAGS = r"""curl -X POST \
  'http://localhost:8080/flux-api/context/tag?contextId=241&tag=tag1,tag2' \
  -H 'Accept: application/json'"""

REMOVE_TAGS = r"""curl -X DELETE \
  'http://localhost:8080/flux-api/context/tag?contextId=257&tag=tag3,tag4' \
  -H 'Accept: application/json'"""

DEFINITION = r"""curl -X GET \
  'http://localhost:8080/flux-api/definition?fluxName=flux.FluxWithTrigger' \
  -H 'Accept: application/json'"""

# -- the flows the examples name -----------------------------------------------------------------

PROCESS_DATA: dict[str, Any] = {
    "name": "flux.ProcessData",
    "startState": "Receive_Order",
    "states": {
        "Receive_Order": {
            "action": "set",
            "vars": {"order": "=input.order"},
            "transitions": [{"on": "success", "to": "Await_Payment"}],
        },
        "Await_Payment": {"action": "wait", "event": "paid", "transitions": [{"on": "paid", "to": "Shipped"}]},
        "Shipped": {"action": "end", "output": {"order": "=vars.order"}},
    },
}
PROCESS_EXTERNAL_EVENT: dict[str, Any] = {
    "name": "flux.ProcessExternalEvent",
    "startState": "Start_State",
    "states": {
        "Start_State": {
            "action": "set",
            "vars": {"seen": "=input"},
            "transitions": [{"on": "success", "to": "Process_Event_State"}],
        },
        "Process_Event_State": {
            "action": "wait",
            "seconds": 3600,
            "transitions": [{"on": "success", "to": "End_State"}],
        },
        "End_State": {"action": "end", "output": {"seen": "=vars.seen"}},
    },
}
COMMENT = (
    "This Flux service demonstrates how to use triggers. Triggers are events that can start a Flux service, "
    "when the Flux engine receives an event it will look for Flux services with matching trigger events and "
    "start them."
)
FLUX_WITH_TRIGGER: dict[str, Any] = {
    "name": "flux.FluxWithTrigger",
    "description": COMMENT,
    "triggers": ["trigger2", "trigger1"],
    "startState": "Print_Trigger",
    "states": {
        "Print_Trigger": {
            "action": "log",
            "message": "This Flux service was started using a trigger",
            "transitions": [{"on": "success", "to": "Done"}],
        },
        "Done": {"action": "end", "output": {"printed": True}},
    },
}


def greeter(name: str, then: str) -> dict[str, Any]:
    """Waits for ``done``, then ends in state ``then`` with the event's input."""
    return {
        "name": name,
        "startState": "Wait_State",
        "states": {
            "Wait_State": {"action": "wait", "event": "done", "transitions": [{"on": "done", "to": then}]},
            then: {"action": "end", "output": "=event.input"},
        },
    }


TRIGGERED = {
    "name": "flux.Triggered",
    "triggers": ["done"],
    "startState": "state",
    "states": {
        "state": {"action": "wait", "event": "later", "transitions": [{"on": "later", "to": "end"}]},
        "end": {"action": "end"},
    },
}
CONTEXT_KEYS = [
    "fluxName",
    "id",
    "currentState",
    "startState",
    "waiting",
    "nextRun",
    "status",
    "input",
    "output",
    "tags",
    "stateContexts",
    "executionHistory",
]


# -- sending them ---------------------------------------------------------------------------------


class Answer:
    """An HTTP answer: status, headers, and the body decoded (JSON, else XML, else text)."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw
        self.body: Any = orjson.loads(raw) if headers.get("Content-Type", "").startswith("application/json") else None


async def send(
    bus: Served,
    verb: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = "admin",
) -> Answer:
    """``verb`` ``target`` (a path with its query, or a whole URL), sent as it is written."""
    url = target if target.startswith("http") else bus.http_url + target
    headers = dict(headers or {})
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {bus.token if token == 'admin' else token}")
    async with (
        aiohttp.ClientSession() as session,
        session.request(verb, URL(url, encoded=True), data=body, headers=headers) as response,
    ):
        return Answer(response.status, dict(response.headers), await response.read())


async def curl(bus: Served, example: str, *, context_id: int | None = None, token: str | None = "admin") -> Answer:
    """Send one of the document's curl examples: its host and port are the bus's, its
    ``contextId`` ``context_id``, and a token is added (the examples leave it out)."""
    words = shlex.split(example.replace("\\\n", " "))
    assert words[0] == "curl"
    verb, url, headers, body = "GET", "", {}, None
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            verb = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(rest).encode()
        else:
            url = word
    url = re.sub(r"^http://(<host>:<port>|localhost:8080)", bus.http_url, url)
    if context_id is not None:
        url = re.sub(r"contextId=[0-9]+", f"contextId={context_id}", url)
    return await send(bus, verb, url, body=body, headers=headers, token=token)


@pytest.fixture
async def ws(bus: Served) -> AsyncIterator[ClientConnection]:
    async with bus.connect() as connection:
        yield connection


async def defined(ws: ClientConnection, flow: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    """The flow, created through the native API unless it is there already."""
    listed = await ok(ws, "LIST", FLOW, namespace=namespace, parameters={"name": flow["name"]})
    if listed:
        return dict(listed[0])
    created: dict[str, Any] = await ok(ws, "CREATE", FLOW, namespace=namespace, data=flow)
    return created


async def started(ws: ClientConnection, flow: dict[str, Any], namespace: str = "", **parameters: Any) -> Any:
    """An execution of ``flow`` (native RUN), once it waits: its short form."""
    return await ok(
        ws, "RUN", FLOW, objectid=flow["id"], namespace=namespace, data=parameters.pop("data", None),
        parameters={"wait": True, **parameters},
    )  # fmt: skip


def message(answer: Answer) -> str:
    assert isinstance(answer.body, dict), answer.raw
    text: str = answer.body["message"]
    return text


# -- the examples ---------------------------------------------------------------------------------


async def test_execute(bus: Served, ws: ClientConnection) -> None:
    await defined(ws, PROCESS_DATA, "examples")
    answer = await curl(bus, EXECUTE)
    assert answer.status == 200, answer.raw
    assert answer.headers["Content-Type"].startswith("application/json")
    assert list(answer.body) == ["message", "contextId"]
    assert answer.body["message"] == "Flux flux.ProcessData is now executing"
    number = answer.body["contextId"]
    assert type(number) is int and number > 0
    execution = await ok(ws, "OPEN", EXECUTION, objectid=str(number))
    assert execution["flowName"] == "flux.ProcessData"
    assert execution["input"] == {"order": {"productId": "productA", "quantity": 2}}
    assert execution["tags"] == ["invoke"]
    opened = await ok(ws, "OPEN", EXECUTION, namespace="examples", objectid=execution["id"])
    assert opened["contextId"] == number  # it runs in the package's namespace
    again = await curl(bus, EXECUTE)
    assert again.body["contextId"] != number


async def test_execute_with_a_start_state_and_as_xml(bus: Served, ws: ClientConnection) -> None:
    await defined(ws, PROCESS_DATA, "examples")
    answer = await send(
        bus,
        "POST",
        "/flux-api/execute?packageName=examples&fluxName=flux.ProcessData",
        body=b"<flux><startState>Await_Payment</startState><input><order>1</order></input></flux>",
        headers={"Accept": "application/xml", "Content-Type": "application/xml"},
    )
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/xml")
    document = xmltodict.parse(answer.raw)["response"]
    assert document["message"] == "Flux flux.ProcessData is now executing"
    execution = await ok(ws, "OPEN", EXECUTION, objectid=document["contextId"])
    assert (execution["startState"], execution["input"]) == ("Await_Payment", {"order": "1"})


async def test_terminate(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_DATA, "examples")
    execution = await started(ws, flow, "examples", data={"order": 7})
    answer = await curl(bus, TERMINATE, context_id=execution["contextId"])
    assert (answer.status, answer.body) == (200, {"message": "Flux terminated"})
    opened = await ok(ws, "OPEN", EXECUTION, namespace="examples", objectid=execution["id"])
    assert opened["status"] == "CANCELED"
    again = await curl(bus, TERMINATE, context_id=execution["contextId"])
    assert again.status == 409 and again.body["errorcode"] == "CONFLICT"


async def test_event(fresh_bus: Served) -> None:
    """The example's event moves every execution waiting for ``done`` tagged ``users`` (not one
    without the tag) and starts the flow it triggers; the answer names them by context id."""
    bus = fresh_bus
    async with bus.connect() as ws:
        first = await defined(ws, greeter("flux.GreetA", "state_A"))
        second = await defined(ws, greeter("flux.GreetB", "state_B"))
        await defined(ws, TRIGGERED)
        a = await started(ws, first, tags="users")
        b = await started(ws, second, tags="users,admins")
        untagged = await started(ws, first)
        answer = await curl(bus, EVENT)
        assert answer.status == 200, answer.raw
        assert list(answer.body) == ["message", "transitions", "executions"]
        assert answer.body["message"] == "Event done has been sent"
        assert answer.body["transitions"] == [
            {"contextId": a["contextId"], "state": "state_A"},
            {"contextId": b["contextId"], "state": "state_B"},
        ]
        (triggered,) = answer.body["executions"]
        assert type(triggered["contextId"]) is int and triggered["state"] == "state"
        assert (await ok(ws, "OPEN", EXECUTION, objectid=str(triggered["contextId"])))["flowName"] == "flux.Triggered"
        done = await settle(ws, a["id"])
        assert (done["status"], done["output"]) == ("SUCCESS", {"greeting": "hello"})
        assert (await ok(ws, "OPEN", EXECUTION, objectid=untagged["id"]))["status"] == "WAITING"


async def test_event_aimed_by_context_id_moves_that_execution_only(bus: Served, ws: ClientConnection) -> None:
    """``POST /flux-api/event?contextId=<A>``: A moves, the others waiting for the event stay."""
    name = unique("aimed")
    flow = await defined(ws, greeter(name, "Heard"))
    waiting = [await started(ws, flow, tags=name) for _ in range(3)]
    body = orjson.dumps({"event": "done", "input": {"n": 1}, "tags": [name]})
    target = f"/flux-api/event?contextId={waiting[1]['contextId']}"
    answer = await send(bus, "POST", target, body=body, headers={"Content-Type": "application/json"})
    assert answer.status == 200, answer.raw
    assert answer.body == {
        "message": "Event done has been sent",
        "transitions": [{"contextId": waiting[1]["contextId"], "state": "Heard"}],
        "executions": [],
    }
    statuses = [(await settle(ws, w["id"]))["status"] for w in waiting]
    assert statuses == ["WAITING", "SUCCESS", "WAITING"]


async def test_contexts(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT)
    made = [await started(ws, flow, data={"n": n}) for n in range(2)]
    answer = await curl(bus, CONTEXTS)
    assert answer.status == 200, answer.raw
    contexts = answer.body
    assert isinstance(contexts, list) and len(contexts) >= 2
    assert [c["id"] for c in contexts[:2]] == [made[1]["contextId"], made[0]["contextId"]]  # newest first
    for context in contexts:
        assert list(context) == CONTEXT_KEYS
        assert context["fluxName"] == "flux.ProcessExternalEvent"
        assert (context["currentState"], context["startState"]) == ("Process_Event_State", "Start_State")
        assert (context["status"], context["waiting"]) == ("WAITING_UNTIL", True)
        assert type(context["nextRun"]) is int and context["nextRun"] > 1_500_000_000_000
        assert [s["name"] for s in context["stateContexts"]] == ["Start_State"]
        assert list(context["stateContexts"][0]) == ["name", "input", "output", "transitionContexts"]
        assert context["executionHistory"] == [
            {"fluxName": "flux.ProcessExternalEvent", "stateName": "Start_State", "stateIndex": 0},
            {"fluxName": "flux.ProcessExternalEvent", "stateName": "Process_Event_State", "stateIndex": 1},
        ]
    assert contexts[0]["input"] == {"n": 1} and contexts[0]["output"] is None and contexts[0]["tags"] == []


async def test_contexts_filters(bus: Served, ws: ClientConnection) -> None:
    """Every documented filter; ``tag`` repeated or comma-joined means all of them; limit and page."""
    name = unique("flux.Filtered")
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT | {"name": name})
    both = await started(ws, flow, tags="red,blue")
    red = await started(ws, flow, tags="red")
    later = await started(ws, flow, startState="Process_Event_State", tags="red,blue")
    base = f"/flux-api/contexts?fluxName={name}"

    async def ids(query: str) -> list[int]:
        answer = await send(bus, "GET", base + query)
        assert answer.status == 200, answer.raw
        return [context["id"] for context in answer.body]

    everything = [later["contextId"], red["contextId"], both["contextId"]]
    assert await ids("") == everything
    assert await ids("&tag=red&tag=blue") == await ids("&tag=red,blue") == [later["contextId"], both["contextId"]]
    assert await ids("&tag=red") == everything
    assert await ids("&tag=blue&tag=green") == []
    assert await ids("&status=WAITING_UNTIL") == everything
    assert await ids("&status=SUCCESS") == []
    assert await ids("&currentState=Process_Event_State") == everything
    assert await ids("&currentState=Start_State") == []
    assert await ids("&startState=Process_Event_State") == [later["contextId"]]
    assert await ids("&startState=Start_State") == [red["contextId"], both["contextId"]]
    assert await ids("&limit=2") == everything[:2]
    assert await ids("&limit=2&page=1") == everything[2:]
    assert await ids("&limit=1&page=2") == everything[2:]
    assert await ids("&page=1") == []
    for query in ("&limit=x", "&page=-1", "&status=SLEEPING", "&limit=1.5"):
        answer = await send(bus, "GET", base + query)
        assert answer.status == 400 and answer.body["errorcode"] == "INVALID_REQUEST", (query, answer.raw)
        assert answer.body["message"]


async def test_contexts_default_to_thirty(bus: Served, ws: ClientConnection) -> None:
    name = unique("flux.Many")
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT | {"name": name})
    for _ in range(31):
        await started(ws, flow)
    answer = await send(bus, "GET", f"/flux-api/contexts?fluxName={name}")
    assert len(answer.body) == 30
    answer = await send(bus, "GET", f"/flux-api/contexts?fluxName={name}&page=1")
    assert len(answer.body) == 1


async def test_context(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT)
    execution = await started(ws, flow, data={"who": "ann"}, tags="t1")
    answer = await curl(bus, CONTEXT, context_id=execution["contextId"])
    assert answer.status == 200, answer.raw
    context = answer.body
    assert list(context) == CONTEXT_KEYS
    assert (context["id"], context["fluxName"], context["status"]) == (
        execution["contextId"],
        "flux.ProcessExternalEvent",
        "WAITING_UNTIL",
    )
    assert (context["input"], context["tags"]) == ({"who": "ann"}, ["t1"])
    ended = await ok(ws, "RUN", FLOW, objectid=flow["id"], parameters={"startState": "End_State", "wait": True})
    finished = (await curl(bus, CONTEXT, context_id=ended["contextId"])).body
    assert "nextRun" not in finished and finished["waiting"] is False
    assert (finished["status"], finished["output"]) == ("SUCCESS", {"seen": None})
    assert finished["stateContexts"][0]["transitionContexts"] == []


async def test_context_state(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT)
    execution = await started(ws, flow, data={"who": "bob"})
    answer = await curl(bus, STATE, context_id=execution["contextId"])
    assert answer.status == 200, answer.raw
    assert list(answer.body) == ["name", "input", "output", "transitionContexts"]
    assert answer.body["name"] == "Start_State"
    [taken] = answer.body["transitionContexts"]
    assert (taken["on"], taken["to"]) == ("success", "Process_Event_State")
    missing = await send(bus, "GET", f"/flux-api/context/state?contextId={execution['contextId']}&stateName=End_State")
    assert missing.status == 404 and missing.body["errorcode"] == "DO_NOT_EXIST"
    unnamed = await send(bus, "GET", f"/flux-api/context/state?contextId={execution['contextId']}")
    assert unnamed.status == 400 and "stateName" in message(unnamed)


async def test_tags(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT)
    execution = await started(ws, flow, tags="tag3")
    number = execution["contextId"]
    added = await curl(bus, ADD_TAGS, context_id=number)
    assert (added.status, added.body) == (
        200,
        {"message": f"Tags [tag1, tag2] successfully added to flux context with id '{number}'"},
    )
    put = await send(bus, "PUT", f"/flux-api/context/tag?contextId={number}&tag=tag4")
    assert put.body == {"message": f"Tags [tag4] successfully added to flux context with id '{number}'"}
    assert (await ok(ws, "OPEN", EXECUTION, objectid=str(number)))["tags"] == ["tag3", "tag1", "tag2", "tag4"]
    removed = await curl(bus, REMOVE_TAGS, context_id=number)
    assert (removed.status, removed.body) == (
        200,
        {"message": f"Tags [tag3, tag4] successfully removed from flux context with id '{number}'"},
    )
    repeated = await send(bus, "POST", f"/flux-api/context/tag?contextId={number}&tag=x&tag=y,z")
    assert message(repeated) == f"Tags [x, y, z] successfully added to flux context with id '{number}'"
    assert (await ok(ws, "OPEN", EXECUTION, objectid=str(number)))["tags"] == ["tag1", "tag2", "x", "y", "z"]
    for query in (f"contextId={number}", f"contextId={number}&tag=", f"contextId={number}&tag=,", "tag=a"):
        refused = await send(bus, "POST", f"/flux-api/context/tag?{query}")
        assert refused.status == 400, (query, refused.raw)


async def test_definition(bus: Served, ws: ClientConnection) -> None:
    await defined(ws, FLUX_WITH_TRIGGER)
    answer = await curl(bus, DEFINITION)
    assert answer.status == 200, answer.raw
    definition = answer.body
    assert list(definition)[:3] == ["comment", "triggers", "states"]
    assert definition["comment"] == COMMENT
    assert definition["triggers"] == ["trigger2", "trigger1"]
    assert [state["name"] for state in definition["states"]] == ["Print_Trigger", "Done"]
    assert definition["states"][0] == {"name": "Print_Trigger", **FLUX_WITH_TRIGGER["states"]["Print_Trigger"]}
    assert not {"id", "owner", "created", "version", "description"} & set(definition)


async def test_definition_by_context_id_wins_over_flux_name(bus: Served, ws: ClientConnection) -> None:
    """An execution keeps the definition it started with, and ``contextId`` takes precedence."""
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT | {"name": unique("flux.Versioned")})
    execution = await started(ws, flow)
    await ok(ws, "UPDATE", FLOW, objectid=flow["id"], data={"description": "changed since"})
    by_context = await send(
        bus, "GET", f"/flux-api/definition?fluxName=flux.FluxWithTrigger&contextId={execution['contextId']}"
    )
    assert by_context.status == 200, by_context.raw
    assert by_context.body["comment"] == "" and by_context.body["triggers"] == []
    assert [s["name"] for s in by_context.body["states"]] == ["Start_State", "Process_Event_State", "End_State"]
    by_name = await send(bus, "GET", f"/flux-api/definition?fluxName={flow['name']}")
    assert by_name.body["comment"] == "changed since"
    neither = await send(bus, "GET", "/flux-api/definition")
    assert neither.status == 400 and "fluxName" in message(neither)
    unknown = await send(bus, "GET", "/flux-api/definition?fluxName=flux.Nowhere")
    assert unknown.status == 404 and unknown.body["errorcode"] == "DO_NOT_EXIST"


# -- answers in XML -------------------------------------------------------------------------------


async def test_answers_in_xml(bus: Served, ws: ClientConnection) -> None:
    flow = await defined(ws, PROCESS_EXTERNAL_EVENT)
    execution = await started(ws, flow)
    xml = {"Accept": "application/xml"}
    listed = await send(bus, "GET", "/flux-api/contexts?fluxName=flux.ProcessExternalEvent&limit=1", headers=xml)
    assert listed.status == 200 and listed.headers["Content-Type"].startswith("application/xml")
    item = xmltodict.parse(listed.raw, force_list=("item",))["response"]["item"][0]
    assert (item["fluxName"], item["id"], item["waiting"]) == (
        "flux.ProcessExternalEvent",
        str(execution["contextId"]),
        "true",
    )
    one = await send(bus, "GET", f"/flux-api/context?contextId={execution['contextId']}", headers=xml)
    assert xmltodict.parse(one.raw)["response"]["status"] == "WAITING_UNTIL"
    refused = await send(bus, "GET", "/flux-api/context?contextId=nine", headers=xml)
    assert refused.status == 400 and xmltodict.parse(refused.raw)["response"]["errorcode"] == "INVALID_REQUEST"


# -- credentials, namespaces and refusals ---------------------------------------------------------


async def test_credentials(bus: Served, ws: ClientConnection) -> None:
    """Bearer as the document says, and every other way the gateway reads credentials."""
    await defined(ws, FLUX_WITH_TRIGGER)
    path = "/flux-api/definition?fluxName=flux.FluxWithTrigger"
    assert (await send(bus, "GET", path)).status == 200
    basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    assert (await send(bus, "GET", path, headers={"Authorization": f"Basic {basic}"}, token=None)).status == 200
    assert (await send(bus, "GET", path, headers={"Flow-Auth-Token": bus.token or ""}, token=None)).status == 200
    key = await ok(ws, "CREATE", "auth/apikey", data={"label": unique("flux-key")})
    assert (await send(bus, "GET", path, headers={"X-API-Key": key["key"]}, token=None)).status == 200
    missing = await send(bus, "GET", path, token=None)
    assert (missing.status, missing.body["errorcode"]) == (401, "AUTH_REQUIRED")
    assert message(missing)
    wrong = await send(bus, "GET", path, token="not-a-token")
    assert (wrong.status, wrong.body["errorcode"]) == (401, "AUTH_FAILED")
    bad_basic = await send(bus, "GET", path, headers={"Authorization": "Basic %%%"}, token=None)
    assert bad_basic.status == 401


async def test_packages_are_namespaces(bus: Served, ws: ClientConnection) -> None:
    """A user limited to one namespace (package) executes there, and sees no context of another
    package, even by its context id."""
    own, other = unique("pkg-own"), unique("pkg-other")
    for namespace in (own, other):
        await defined(ws, PROCESS_DATA, namespace)
    hidden = await started(ws, await defined(ws, PROCESS_DATA, other), other, data={"order": 1})
    user = unique("flux-user")
    data = {"username": user, "password": "a-long-enough-password", "roles": ["operator"], "namespaces": [own]}
    await ok(ws, "CREATE", "auth/user", data=data)
    token = (await ok(ws, "CREATE", "auth/token", data={"username": user, "password": data["password"]}))["token"]
    order = b'{"input": {"order": 2}}'
    mine = await send(
        bus, "POST", f"/flux-api/execute?packageName={own}&fluxName=flux.ProcessData", body=order, token=token
    )
    assert mine.status == 200, mine.raw
    theirs = await send(
        bus, "POST", f"/flux-api/execute?packageName={other}&fluxName=flux.ProcessData", body=order, token=token
    )
    assert (theirs.status, theirs.body["errorcode"]) == (403, "PERMISSION_DENIED")
    # A call by context id is made in the default namespace unless packageName names another:
    # a caller limited to its own package names it.
    target = f"/flux-api/context?contextId={mine.body['contextId']}"
    outside = await send(bus, "GET", target, token=token)
    assert (outside.status, outside.body["errorcode"]) == (403, "PERMISSION_DENIED")
    context = await send(bus, "GET", f"{target}&packageName={own}", token=token)
    assert context.status == 200 and context.body["fluxName"] == "flux.ProcessData"
    assert (await send(bus, "GET", f"{target}&packageName={other}")).body["id"] == mine.body["contextId"]
    for verb, target in (
        ("GET", f"/flux-api/context?contextId={hidden['contextId']}"),
        ("DELETE", f"/flux-api/terminate?contextId={hidden['contextId']}"),
        ("POST", f"/flux-api/context/tag?contextId={hidden['contextId']}&tag=x"),
        ("GET", f"/flux-api/definition?contextId={hidden['contextId']}"),
        ("POST", f"/flux-api/event?contextId={hidden['contextId']}"),
    ):
        refused = await send(bus, verb, f"{target}&packageName={own}", body=b'{"event": "paid"}', token=token)
        assert (refused.status, refused.body["errorcode"]) == (404, "DO_NOT_EXIST"), target
    assert (await ok(ws, "OPEN", EXECUTION, namespace=other, objectid=hidden["id"]))["status"] == "WAITING"
    listed = await send(bus, "GET", f"/flux-api/contexts?packageName={own}", token=token)
    assert [c["id"] for c in listed.body] == [mine.body["contextId"]]
    assert (await send(bus, "GET", "/flux-api/contexts", token=token)).status == 403


async def test_refusals(bus: Served, ws: ClientConnection) -> None:
    """Bad input answers a clear message with its status, never a traceback."""
    await defined(ws, PROCESS_DATA, "examples")
    json_body = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, bytes | None, int]] = [
        ("POST", "/flux-api/execute?packageName=examples", None, 400),
        ("POST", "/flux-api/execute?fluxName=flux.ProcessData", None, 400),
        ("POST", "/flux-api/execute?packageName=examples&fluxName=flux.Nowhere", None, 404),
        ("POST", "/flux-api/execute?packageName=examples&fluxName=flux.ProcessData", b"{not json", 400),
        ("POST", "/flux-api/execute?packageName=examples&fluxName=flux.ProcessData", b"[1, 2]", 400),
        ("POST", "/flux-api/execute?packageName=examples&fluxName=flux.ProcessData", b'{"tags": 5}', 400),
        ("POST", "/flux-api/execute?packageName=examples&fluxName=flux.ProcessData", b'{"startState": "Nope"}', 422),
        ("POST", "/flux-api/event", b'{"input": {}}', 400),
        ("POST", "/flux-api/event", b'{"event": 5}', 400),
        ("POST", "/flux-api/event?contextId=999999999", b'{"event": "done"}', 404),
        ("DELETE", "/flux-api/terminate", None, 400),
        ("DELETE", "/flux-api/terminate?contextId=0", None, 400),
        ("DELETE", "/flux-api/terminate?contextId=-3", None, 400),
        ("DELETE", "/flux-api/terminate?contextId=9223372036854775808", None, 400),
        ("DELETE", "/flux-api/terminate?contextId=999999999", None, 404),
        ("GET", "/flux-api/context?contextId=12abc", None, 400),
        ("GET", "/flux-api/context?contextId=999999999", None, 404),
        ("GET", "/flux-api/nothing-here", None, 404),
    ]
    for verb, target, body, status in cases:
        answer = await send(bus, verb, target, body=body, headers=json_body)
        assert answer.status == status, (verb, target, answer.raw)
        assert answer.body["message"] and "Traceback" not in answer.body["message"]
        assert set(answer.body) <= {"message", "errorcode", "errorid", "field", "retryAfter"}
    assert "Traceback" not in bus.log()
    wrong_verb = await send(bus, "GET", "/flux-api/execute")
    assert (wrong_verb.status, wrong_verb.headers["Allow"]) == (405, "POST")
    assert wrong_verb.body["errorcode"] == "METHOD_NOT_SUPPORTED"
    tag_verb = await send(bus, "PATCH", "/flux-api/context/tag?contextId=1&tag=a")
    assert (tag_verb.status, tag_verb.headers["Allow"]) == (405, "POST, PUT, DELETE")


async def test_openapi_describes_the_flux_paths(bus: Served) -> None:
    answer = await send(bus, "GET", "/api/openapi.json")
    paths = answer.body["paths"]
    assert {path: sorted(paths[path]) for path in paths if path.startswith("/flux-api/")} == {
        "/flux-api/execute": ["post"],
        "/flux-api/terminate": ["delete"],
        "/flux-api/event": ["post"],
        "/flux-api/contexts": ["get"],
        "/flux-api/context": ["get"],
        "/flux-api/context/state": ["get"],
        "/flux-api/context/tag": ["delete", "post", "put"],
        "/flux-api/definition": ["get"],
    }
    contexts = paths["/flux-api/contexts"]["get"]
    assert {p["name"] for p in contexts["parameters"]} >= {
        "fluxName",
        "tag",
        "status",
        "currentState",
        "startState",
        "limit",
        "page",
    }
