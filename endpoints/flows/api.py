"""The endpoints of the ``flows`` application: definitions, executions, events, commands, status."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from endpoints.flows import health
from endpoints.flows.contexts import aimed, context_id_of, forwarded, located, named
from endpoints.flows.definition import runnable, validate_definition
from endpoints.flows.engine import Engine
from endpoints.flows.model import (
    ACTIVE,
    EXECUTIONS,
    FLOWS,
    PAUSED,
    RUNNING,
    SELECT_FLOW,
    STATUSES,
    USER_INPUT,
    WAITING,
    context_view,
    no_text,
    progress_view,
    stamp,
    state_view,
)
from endpoints.flows.schedules import FlowSchedules
from endpoints.flows.xml_input import from_xml, is_xml
from flowbus import (
    Call,
    Collection,
    Conflict,
    Delete,
    DoesNotExist,
    Endpoint,
    FlowBusError,
    Insert,
    InvalidData,
    InvalidRequest,
    Page,
    Patch,
    Query,
    Schema,
    check_objectid,
    every,
    expected_version,
    iso,
    new_objectid,
)

__all__ = ["Commands", "Events", "Executions", "FlowDefinitions", "FlowStatus"]

NAMES = "flows/name"
"""One record per flow name in a namespace (its id is the name): names stay unique."""
MAX_BATCH = 1000
_READ_ONLY = ("owner", "state")
_SERVERS = ("id", "flow_id", "created", "updated", "version", "createdAt", "lastModified")
"""Fields of CREATE and UPDATE data that are the bus's, or name the id: never stored as given."""
_MAX_CLONE_RACES = 100
T = TypeVar("T")
_TRUE = (True, "true", "1", "yes")


def _flag(parameters: dict[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    return value in _TRUE or (isinstance(value, str) and value.lower() in _TRUE)


def _words(value: Any, name: str) -> list[str]:
    """A list of names given as a JSON array or a comma list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part for item in value for part in _words(item, name)]
    raise InvalidRequest(f"'{name}' must be a list of strings or a comma-separated string")


def _statuses(value: Any) -> list[str]:
    """The statuses a LIST asks for: one, several (a JSON array or a comma list), or any (none)."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else [value]
    names = [name for part in parts for name in _split(part)]
    if not names or any(name not in STATUSES for name in names):
        raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}")
    return list(dict.fromkeys(names))


_LIST_FILTERS = ("flow", "flowName", "fluxName", "tag", "status", "currentState", "startState", "owner")
_LIST_OTHERS = ("createdAfter", "createdBefore", "sort", "view", "limit", "page", "offset")
_LIST_PARAMETERS = frozenset(_LIST_FILTERS + _LIST_OTHERS)
_LIST_TAKES = ", ".join(_LIST_FILTERS + _LIST_OTHERS)


def _oldest_first(sort: Any) -> bool:
    """A LIST's order: ``created`` (or ``+created``) oldest first; ``-created`` (the default) newest first."""
    if sort in (None, "", "-created"):
        return False
    if sort in ("created", "+created"):
        return True
    raise InvalidRequest("'sort' must be 'created' (oldest first) or '-created' (newest first)")


def _moment(parameters: dict[str, Any], name: str) -> float | None:
    """A time bound of a LIST (ISO 8601: a date, or a time with or without its offset; UTC if
    none), as seconds since the epoch."""
    value = parameters.get(name)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date or time, as 2030-01-01T00:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _stop_type(value: Any) -> int:
    """The ``type`` of a stop (0: after the current state, 1: now), for an execution's UPDATE and
    for flows/command alike: the number, or its decimal string (as an XML or a form client sends it).

    Raises:
        InvalidData: anything else.
    """
    if value in (0, 1) or value in ("0", "1"):
        return int(value)
    raise InvalidData("'type' must be 0 (soft) or 1 (hard)", field="type")


def _typed(call: Call, schema: Any) -> Any:
    """The call's ``data``; with ``parameters.dataType=XML`` (it came from XML, all text), read
    as ``schema`` asks (:mod:`endpoints.flows.xml_input`)."""
    try:
        xml = is_xml(call.parameters)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return from_xml(call.data, schema) if xml else call.data


def _split(part: Any) -> list[Any]:
    return [name.strip() for name in part.split(",")] if isinstance(part, str) and "," in part else [part]


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidRequest("'data' must be a JSON object")
    return data


async def find_flow(call: Call, namespace: str, key: str) -> dict[str, Any]:
    """The flow with id ``key``, else the one named ``key``."""
    flow = await call.store.get(FLOWS, namespace, key)
    if flow is None:
        named = await call.store.get(NAMES, namespace, key)
        if named is not None:
            flow = await call.store.get(FLOWS, namespace, named["flow"])
    if flow is None:
        raise DoesNotExist(f"No flow {key[:128]!r}")
    return flow


class FlowDefinitions(Collection):
    """``flows/flow``: flow definitions. CREATE validates the whole definition; RUN starts one."""

    def __init__(self, engine: Engine, schedules: FlowSchedules) -> None:
        super().__init__(FLOWS, title="name", searchable=["name", "description"], description="Flow definitions")
        self.engine = engine
        self.schedules = schedules

    async def open(self, call: Call) -> dict[str, Any]:
        """OPEN by id, or by name (as the seeds fetch a definition by its flow's name)."""
        assert call.objectid is not None
        return await find_flow(call, call.namespace, call.objectid)

    def prepare(self, obj: dict[str, Any]) -> str:
        definition = {k: v for k, v in obj.items() if k not in ("id", "created", "updated", "version", *_READ_ONLY)}
        validate_definition(definition)
        return f"{obj.get('name', '')} {obj.get('description', '')}"

    async def create(self, call: Call) -> Any:
        if isinstance(call.data, list):
            return await self._create_flows(call, call.data)
        obj = self._new(call, _object(call.data))
        stored = await call.store.transaction(self._inserts(call, obj))
        return self._armed(call, stored[0])

    def _armed(self, call: Call, flow: dict[str, Any] | None) -> dict[str, Any]:
        """A flow just written: its schedule is armed here at once (other processes follow the feed)."""
        assert flow is not None
        self.schedules.armed(call.namespace, flow)
        return flow

    async def _create_flows(self, call: Call, items: list[Any]) -> list[Any]:
        if not items or len(items) > MAX_BATCH:
            raise InvalidRequest(f"'data' must hold 1 to {MAX_BATCH} flows")
        writes: list[Any] = []
        names: set[str] = set()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidData(f"[{index}]: each flow must be a JSON object", field=f"[{index}]")
            obj = _at(index, self._new, call, item)
            if obj.get("name") in names:
                raise Conflict(f"[{index}]: the name {obj.get('name')!r} is given twice")
            names.add(str(obj.get("name")))
            _at(index, self.prepare, obj)
            writes.extend(self._inserts(call, obj))
        stored = await call.store.transaction(writes)
        return [self._armed(call, flow) for flow in stored[::2]]

    def _new(self, call: Call, data: dict[str, Any]) -> dict[str, Any]:
        objectid = _given_id(data)
        fields = {k: v for k, v in data.items() if k not in (*_SERVERS, *_READ_ONLY)}
        now = stamp()
        owner = call.identity.subject
        return {**fields, "id": objectid, "owner": owner, "state": "running", "createdAt": now, "lastModified": now}

    def _inserts(self, call: Call, obj: dict[str, Any]) -> list[Any]:
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidData("'name' is required: a non-empty string", field="name")
        return [
            Insert(FLOWS, call.namespace, obj, self.prepare),
            Insert(NAMES, call.namespace, {"id": name, "flow": obj["id"]}, no_text),
        ]

    async def update(self, call: Call) -> Any:
        """UPDATE by id, or by name (as OPEN and RUN). ``owner`` and ``state`` are the bus's: given
        as they are, they are ignored; changed, refused."""
        assert call.objectid is not None
        changes = {k: v for k, v in _object(call.data).items() if k not in _SERVERS}
        current = await find_flow(call, call.namespace, call.objectid)
        for name in _READ_ONLY:  # sent back as they are (a flow as it was opened), they are ignored
            if name in changes and changes.pop(name) != current.get(name):
                raise InvalidData(f"'{name}' is kept by the bus (see flows/command)", field=name)
        flow_id = current["id"]
        expect = expected_version(call.parameters)
        changes["lastModified"] = stamp()
        writes: list[Any] = [Patch(FLOWS, call.namespace, flow_id, changes, self.prepare, expect=expect)]
        new_name = changes.get("name", current["name"])
        if new_name != current["name"]:
            if not isinstance(new_name, str) or not new_name:
                raise InvalidData("'name' must be a non-empty string", field="name")
            writes.append(Delete(NAMES, call.namespace, current["name"]))
            writes.append(Insert(NAMES, call.namespace, {"id": new_name, "flow": flow_id}, no_text))
        stored = await call.store.transaction(writes)
        return self._armed(call, stored[0])

    async def delete(self, call: Call) -> Any:
        """DELETE by id, or by name (as OPEN and RUN)."""
        assert call.objectid is not None
        current = await find_flow(call, call.namespace, call.objectid)
        expect = expected_version(call.parameters)
        writes = [
            Delete(FLOWS, call.namespace, current["id"], expect=expect),
            Delete(NAMES, call.namespace, current["name"]),
        ]
        stored = await call.store.transaction(writes)
        self.schedules.disarmed(call.namespace, current["id"])
        await health.forget(call.store, call.namespace, current["id"])
        return stored[0]

    async def run(self, call: Call) -> Any:
        assert call.objectid is not None
        flow = await find_flow(call, call.namespace, call.objectid)
        operation = call.parameters.get("operation", "start")
        if operation == "clone":
            return await self._clone(call, flow)
        if operation != "start":
            raise InvalidRequest("'operation' must be 'start' or 'clone'")
        return await start(self.engine, call, flow)

    async def _clone(self, call: Call, flow: dict[str, Any]) -> dict[str, Any]:
        """A disabled copy with a new id, named ``data.name`` or the first free of ``<name> (copy)``,
        ``<name> (copy 2)``, ... (so a flow is cloned as often as asked)."""
        given = _object(call.data).get("name")
        if given is not None and (not isinstance(given, str) or not given):
            raise InvalidData("'name' must be a non-empty string: the clone's name", field="name")
        data = {k: v for k, v in flow.items() if k not in (*_SERVERS, *_READ_ONLY)}
        names = iter([given]) if given is not None else _copy_names(flow["name"])
        races = 0
        for name in names:
            if await call.store.get(NAMES, call.namespace, name) is not None:
                if given is not None:
                    raise Conflict(f"A flow named {given[:256]!r} exists already")
                continue
            copy = self._new(call, {**data, "name": name, "disabled": True})
            try:
                stored = await call.store.transaction(self._inserts(call, copy))
            except Conflict:  # the name was taken meanwhile
                races += 1
                if given is not None or races > _MAX_CLONE_RACES:
                    raise
                continue
            return self._armed(call, stored[0])
        raise AssertionError("unreachable: copy names never run out")


def _at(index: int, check: Callable[..., T], *args: Any) -> T:
    """``check(*args)``, its INVALID_DATA naming the place of the flow in the array (``[1].id``)."""
    try:
        return check(*args)
    except InvalidData as exc:
        raise InvalidData(f"[{index}]: {exc.message}", field=f"[{index}].{exc.field or ''}".rstrip(".")) from None


def _given_id(data: dict[str, Any]) -> str:
    """The id of a new flow: ``id``, or ``flow_id`` (flows-config's name for it), by the rule of
    every id; a fresh one when neither is given."""
    given, alias = data.get("id"), data.get("flow_id")
    if alias is not None:
        check_objectid(alias, "flow_id")
        if given is not None and given != alias:
            raise InvalidData("'flow_id' is another name of 'id': give one of them, or the same", field="flow_id")
        given = alias
    return new_objectid() if given is None else check_objectid(given)


def _copy_names(name: str) -> Iterator[str]:
    yield f"{name} (copy)"
    for n in itertools.count(2):
        yield f"{name} (copy {n})"


async def start(engine: Engine, call: Call, flow: dict[str, Any]) -> dict[str, Any]:
    """RUN of a flow: start an execution as the caller; answer at once, when it settles, or stream."""
    if flow.get("disabled"):
        raise Conflict(f"The flow {flow['name']!r} is disabled")
    if flow.get("state", "running") != "running":
        raise Conflict(f"The flow {flow['name']!r} is {flow.get('state')}: start or resume it first")
    parameters = call.parameters
    tags = _words(parameters.get("tags"), "tags")
    start_state = parameters.get("startState")
    if start_state is not None and not isinstance(start_state, str):
        raise InvalidRequest("'startState' must be a state name")
    data = _typed(call, flow.get("input"))
    record = await engine.start_execution(
        call.namespace, flow, call.identity.subject, data, start_state=start_state, tags=tags
    )
    if _flag(parameters, "stream") and call.streams:
        return await _stream(engine, call, record)
    if _flag(parameters, "wait"):
        record = await engine.settled(call.namespace, record["id"], known=record)
    return progress_view(record)


async def _stream(engine: Engine, call: Call, record: dict[str, Any]) -> dict[str, Any]:
    """Send the progress after each commit (``status: 1``) until the execution settles."""
    with engine.watch(call.namespace, record["id"]) as queue:
        fresh = await engine.repository.get(call.namespace, record["id"])
        record = fresh or record
        call.progress(progress_view(record))
        while record["status"] in ACTIVE:
            record = await queue.get()
            if record["status"] in ACTIVE:
                call.progress(progress_view(record))
    return progress_view(record)


class Executions(Endpoint):
    """``flows/execution``: what runs, ran or waits; its context, commands and answers."""

    description = "Flow executions: their context, progress, tags, commands and answers"

    def __init__(self, engine: Engine) -> None:
        super().__init__(EXECUTIONS)
        self.engine = engine

    async def list(self, call: Call) -> Page:
        """Executions matching the filters, newest first (``sort=created``: oldest first); each
        as its context, or its short form with ``view=progress``. ``status`` may name several.
        Any other parameter is refused by name (it would otherwise filter nothing)."""
        parameters = dict(call.parameters)
        unknown = sorted(str(key)[:64] for key in parameters if key not in _LIST_PARAMETERS)
        if unknown:
            raise InvalidRequest(
                f"LIST of executions does not take {', '.join(map(repr, unknown[:8]))}: it takes {_LIST_TAKES}"
            )
        tags = _words(parameters.pop("tag", None), "tag")
        statuses = _statuses(parameters.pop("status", None))
        filters: dict[str, Any] = {}
        renames = {"flow": "flowId", "flowName": "flowName", "fluxName": "flowName"}
        for key in ("flow", "flowName", "fluxName", "currentState", "startState", "owner"):
            if parameters.get(key) is not None:
                filters[renames.get(key, key)] = parameters.pop(key)
        query = Query.from_parameters({k: v for k, v in parameters.items() if k in ("limit", "page", "offset")})
        oldest = _oldest_first(parameters.get("sort"))
        after, before = _moment(parameters, "createdAfter"), _moment(parameters, "createdBefore")
        if parameters.get("view") not in (None, "", "context", "progress"):
            raise InvalidRequest("'view' of a LIST must be 'context' or 'progress'")
        view = progress_view if parameters.get("view") == "progress" else context_view
        items, total = await self.engine.repository.page(
            call.namespace,
            filters,
            statuses=statuses,
            tags=tags,
            limit=query.limit,
            offset=query.offset,
            oldest=oldest,
            created=(after, before),
        )
        return Page([view(r) for r in items], query.limit, query.offset, total)

    async def open(self, call: Call) -> Any:
        return await self._located(call, self._open)

    async def update(self, call: Call) -> Any:
        return await self._located(call, self._update)

    async def delete(self, call: Call) -> Any:
        return await self._located(call, self._delete)

    async def run(self, call: Call) -> Any:
        return await self._located(call, self._run)

    async def _located(self, call: Call, handler: Callable[[Call], Awaitable[Any]]) -> Any:
        """Serve ``call`` on the execution its objectid names: an id, or a context id, which
        finds the execution in any namespace the caller may use (the call is then made again
        there, through the dispatcher, and so authorized for that namespace)."""
        number = context_id_of(call.objectid)
        if number is None:
            return await handler(call)
        namespace, objectid = await located(self.engine.repository, number)
        if namespace == call.namespace:
            return await handler(dataclasses.replace(call, objectid=objectid))
        return await forwarded(call, namespace, objectid, call.data, call.parameters, number)

    async def _open(self, call: Call) -> Any:
        record = await self._get(call)
        view = call.parameters.get("view")
        state = call.parameters.get("state")
        if state is not None:
            found = state_view(record, str(state))
            if found is None:
                raise DoesNotExist(f"The execution has no state context {str(state)[:128]!r}")
            return found
        if view == "progress":
            return progress_view(record)
        if view == "definition":
            definition = await self.engine.definition(record["revision"])
            return definition.data
        if view not in (None, "", "context"):
            raise InvalidRequest("'view' must be 'context', 'progress' or 'definition'")
        return context_view(record)

    async def _update(self, call: Call) -> Any:
        data = _object(call.data)
        expect = expected_version(call.parameters)
        record = await self._get(call)
        if expect is not None and record["version"] != expect:
            raise Conflict(f"The execution is at version {record['version']}, not {expect}")
        if "command" in data:
            kind = _stop_type(data.get("type", 0))
            if data["command"] not in ("pause", "resume", "stop"):
                raise InvalidData("'command' must be pause, resume or stop", field="command")
            runner = self.engine.runner
            record = await runner.command(
                call.namespace, record, data["command"], kind, again=expect is None, by=call.identity.subject
            )
            return context_view(record)
        add, remove = _words(data.get("addTags"), "addTags"), _words(data.get("removeTags"), "removeTags")
        if not add and not remove:
            raise InvalidData("UPDATE takes 'command', 'addTags' or 'removeTags'")
        return context_view(await self._retag(call, record, add, remove, again=expect is None))

    async def _retag(
        self, call: Call, record: dict[str, Any], add: builtins.list[str], remove: builtins.list[str], *, again: bool
    ) -> dict[str, Any]:
        """Change the tags on the version read; ``again``: when another writer came between, on
        the fresh version (else: Conflict, as a write made on a given version)."""
        while True:
            tags = [t for t in dict.fromkeys([*(record.get("tags") or []), *add]) if t not in remove]
            try:  # the engine hears of it from the feed, as of a change made elsewhere
                return await self.engine.repository.transition(
                    call.namespace, record, {"tags": tags}, handled=False, by=call.identity.subject
                )
            except Conflict:
                if not again:
                    raise
                record = await self._get(call)

    async def _delete(self, call: Call) -> Any:
        expect = expected_version(call.parameters)
        record = await self._get(call)
        if expect is not None and record["version"] != expect:
            raise Conflict(f"The execution is at version {record['version']}, not {expect}")
        runner = self.engine.runner
        stopped = await runner.command(
            call.namespace, record, "stop", 1, again=expect is None, by=call.identity.subject
        )
        return context_view(stopped)

    async def _run(self, call: Call) -> Any:
        record = await self._get(call)
        operation = call.parameters.get("operation")
        if operation != "input":
            raise InvalidRequest("RUN of an execution takes parameters.operation=input")
        if record["status"] == USER_INPUT:
            return progress_view(await self._answer(call, record))
        if record["status"] == SELECT_FLOW:
            return progress_view(await self._choose(call, record))
        raise Conflict(f"The execution is {record['status']}: it does not wait for input")

    async def _answer(self, call: Call, record: dict[str, Any]) -> dict[str, Any]:  # USER_INPUT
        schema = record.get("schema")
        data = _typed(call, schema)
        if isinstance(schema, dict):
            Schema(schema).validate(call.object if data is call.data else data)
        moved = await self.engine.runner.resume_waiting(
            call.namespace, record, "success", result=data, by=call.identity.subject
        )
        if moved is None:
            raise Conflict("The execution was answered or moved meanwhile")
        return moved

    async def _choose(self, call: Call, record: dict[str, Any]) -> dict[str, Any]:
        data = _object(call.data)
        name = data.get("flow")
        if name not in (record.get("choices") or []):
            raise InvalidData(f"'flow' must be one of {record.get('choices')}", field="flow")
        flow = await find_flow(call, call.namespace, str(name))
        await self.engine.check_start(flow, data.get("input"))  # a refused answer writes nothing
        child = new_objectid()
        changes = {"status": WAITING, "child": child, "choices": None, "message": f"Running {name}"}
        try:
            parent = await self.engine.repository.transition(
                call.namespace, record, changes, handled=False, by=call.identity.subject
            )
        except Conflict:
            raise Conflict("The execution was answered or moved meanwhile") from None
        owner = record.get("owner") or call.identity.subject
        try:
            await self.engine.start_execution(
                call.namespace, flow, owner, data.get("input"), parent=record["id"], objectid=child
            )
        except FlowBusError:  # refused after all (changed meanwhile): the parent waits for an answer again
            undo = {
                "status": SELECT_FLOW,
                "child": None,
                "choices": record.get("choices"),
                "message": record["message"],
            }
            with contextlib.suppress(Conflict, DoesNotExist):
                await self.engine.repository.transition(call.namespace, parent, undo, handled=False)
            raise
        return parent

    async def _get(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        record = await self.engine.repository.get(call.namespace, call.objectid)
        if record is None:
            raise DoesNotExist()
        return record


class Events(Endpoint):
    """``flows/event``: RUN with the event's name as objectid moves waiting executions and starts
    the flows it triggers."""

    description = "Send an event to waiting executions and to the flows it triggers"

    def __init__(self, engine: Engine) -> None:
        super().__init__("flows/event")
        self.engine = engine

    async def run(self, call: Call) -> Any:
        assert call.objectid is not None
        name = call.objectid
        data = _object(call.data)
        tags = _words(data.get("tags"), "tags")
        ids = call.parameters.get("ids", "id")
        if ids not in ("id", "contextId"):
            raise InvalidRequest("'ids' must be 'id' (executions' ids) or 'contextId' (their context ids)")
        context_id = aimed(data, call.parameters)
        if (number := context_id_of(context_id)) is not None:
            namespace, context_id = await located(self.engine.repository, number)
            if namespace != call.namespace:
                parameters = {k: v for k, v in call.parameters.items() if k != "contextId"}
                return await forwarded(call, namespace, name, {**data, "contextId": context_id}, parameters, number)
        assert context_id is None or isinstance(context_id, str)
        event = {"name": name, "input": data.get("input"), "tags": tags}
        if context_id is not None:
            return await self._send(call, name, event, context_id, ids)
        transitions = await self._move(call, name, event, tags, ids)
        executions = await self._trigger(call, name, event, ids)
        return {"message": f"Event {name} has been sent", "transitions": transitions, "executions": executions}

    async def _send(self, call: Call, name: str, event: dict[str, Any], context_id: str, ids: str) -> dict[str, Any]:
        """An event for one execution: it moves it, or is kept for its wait while it is paused or
        resuming (the answer's ``queued``)."""
        record = await self.engine.repository.get(call.namespace, context_id)
        if record is None:
            raise DoesNotExist(f"No execution {context_id[:128]!r}")
        moved, kept = await self.engine.runner.send(call.namespace, record, name, event, by=call.identity.subject)
        answer: dict[str, Any] = {"message": f"Event {name} has been sent", "transitions": [], "executions": []}
        if moved is not None:
            answer["transitions"] = [{"contextId": named(record, ids), "state": moved["currentState"]}]
        if kept is not None:
            answer["queued"] = [{"contextId": named(record, ids), "status": kept["status"]}]
        return answer

    async def _move(
        self, call: Call, name: str, event: dict[str, Any], tags: list[str], ids: str
    ) -> list[dict[str, Any]]:
        found = await self.engine.repository.find(call.namespace, {"status": WAITING, "waitEvent": name})
        waiting = [r for r in found if set(tags) <= set(r.get("tags") or [])]
        moved = []
        for record in waiting:
            stored = await self.engine.runner.resume_waiting(
                call.namespace, record, name, event=event, by=call.identity.subject
            )
            if stored is not None:
                moved.append({"contextId": named(record, ids), "state": stored["currentState"]})
        return moved

    async def _trigger(self, call: Call, name: str, event: dict[str, Any], ids: str) -> list[dict[str, Any]]:
        started = []
        for flow in await every(call.store, FLOWS, call.namespace, sort="created"):
            if name not in (flow.get("triggers") or []) or flow.get("disabled"):
                continue
            if flow.get("state", "running") != "running" or not runnable(flow):
                continue
            try:
                record = await self.engine.start_execution(
                    call.namespace, flow, flow.get("owner") or call.identity.subject, event.get("input"), event=event
                )
            except Conflict:  # stopped meanwhile
                continue
            except InvalidData as exc:  # its input refused: counted in the flow's status
                at = iso(self.engine.clock.now())
                await health.skipped(call.store, call.namespace, flow["id"], at, name, exc.message)
                continue
            started.append({"contextId": named(record, ids), "state": record["currentState"]})
        return started


_VERBS = {"start": "started", "stop": "stopped", "pause": "paused", "resume": "resumed"}


class Commands(Endpoint):
    """``flows/command``: start, stop, pause or resume flows (RUN with the command as objectid)."""

    description = "Start, stop, pause or resume flows"

    def __init__(self, engine: Engine, schedules: FlowSchedules) -> None:
        super().__init__("flows/command")
        self.engine = engine
        self.schedules = schedules

    async def run(self, call: Call) -> Any:
        command = call.objectid
        if command not in _VERBS:
            raise InvalidRequest("The command (objectid) must be start, stop, pause or resume")
        data = _object(call.data)
        kind = _stop_type(data.get("type", 0))
        flows = await self._flows(call, data.get("flow_ids"))
        details = [await self._command(call, flow, command, kind) for flow in flows]
        return {"status": f"Flows {_VERBS[command]}", "details": details}

    async def _flows(self, call: Call, ids: Any) -> list[dict[str, Any]]:
        if ids is None:
            return await every(call.store, FLOWS, call.namespace, sort="created")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidData("'flow_ids' must be a list of flow ids", field="flow_ids")
        return [await find_flow(call, call.namespace, flow_id) for flow_id in ids]

    async def _command(self, call: Call, flow: dict[str, Any], command: str, kind: int) -> dict[str, Any]:
        state = {"start": "running", "resume": "running", "stop": "stopped", "pause": "paused"}[command]
        changes = {"state": state, "lastModified": stamp()}
        patched = await call.store.patch(FLOWS, call.namespace, flow["id"], changes, no_text)
        self.schedules.armed(call.namespace, patched)
        if command in ("stop", "pause"):
            await self._each(call, flow, RUNNING, "pause" if command == "pause" else "stop", kind)
        if command == "stop":
            for status in ("QUEUED", "WAITING", "WAITING_UNTIL", "USER_INPUT", "SELECT_FLOW", PAUSED):
                await self._each(call, flow, status, "stop", kind)
        if command == "resume":
            await self._each(call, flow, PAUSED, "resume", kind)
        return {"flow_id": flow["id"], "status": "disabled" if flow.get("disabled") else state}

    async def _each(self, call: Call, flow: dict[str, Any], status: str, command: str, kind: int) -> None:
        for record in await self.engine.repository.find(call.namespace, {"flowId": flow["id"], "status": status}):
            with contextlib.suppress(Conflict, DoesNotExist):
                await self.engine.runner.command(call.namespace, record, command, kind, by=call.identity.subject)


class FlowStatus(Endpoint):
    """``flows/status``: per flow, whether it runs, and how many executions are in each status."""

    description = "Each flow's state and its executions by status"

    def __init__(self, engine: Engine) -> None:
        super().__init__("flows/status")
        self.engine = engine

    async def list(self, call: Call) -> Page:
        query = Query.from_parameters({k: v for k, v in call.parameters.items() if k in ("limit", "page", "offset")})
        flows, total = await call.store.query(FLOWS, call.namespace, Query(query.limit, query.offset, "created"))
        return Page([await self._status(call, flow) for flow in flows], query.limit, query.offset, total)

    async def open(self, call: Call) -> Any:
        assert call.objectid is not None
        return await self._status(call, await find_flow(call, call.namespace, call.objectid))

    async def _status(self, call: Call, flow: dict[str, Any]) -> dict[str, Any]:
        counts = {}
        for status in STATUSES:
            counts[status] = await self.engine.repository.count(
                call.namespace, {"flowId": flow["id"], "status": status}
            )
        state = "disabled" if flow.get("disabled") else flow.get("state", "running")
        told = health.health_of(await call.store.get(health.HEALTH, call.namespace, flow["id"]))
        return {"flow_id": flow["id"], "name": flow.get("name"), "state": state, "executions": counts, **told}
