"""The v1 operator API, `POST /api/v1` (also `/api/v1/operator`, which pymesos'
MesosOperatorMasterDriver posts to, and `/master/api/v1`), as Mesos' Master::Http::api
(src/master/http.cpp) with the Call and Response of include/mesos/v1/master/master.proto.

JSON only. Every answer is 200: a Response `{"type": T, "<t>": {...}}` for the GET_* calls, an
empty body for the calls that change something. SUBSCRIBE answers a chunked RecordIO stream of
Events (mesoslite.subscribers) that starts with SUBSCRIBED (the whole GET_STATE and the
heartbeat interval). Errors are Mesos' and plain text: 405, 415, 406 and 400 as the scheduler
API (mesoslite.httputil); a call type mesoslite does not implement (dynamic reservations,
volumes, the pre-1.9 SET_QUOTA/REMOVE_QUOTA, logging level, files) is 501 naming it; GET_QUOTA
and UPDATE_QUOTA are mesoslite.quota's; a bad argument is 400 naming the field and
changes nothing; an unknown framework (TEARDOWN) is 400, an unknown agent (MARK_AGENT_GONE)
404, as Mesos'. A standby answers 307 to the leader, or 503, as for the scheduler API. With
framework authentication (mesoslite.auth) the calls need credentials (realm
`mesos-master-readwrite`).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web

from mesoslite import maintenance, metrics, quota, v1
from mesoslite.auth import READWRITE_REALM
from mesoslite.flags import flag_values
from mesoslite.httputil import (
    LEADERSHIP_KEY,
    accepts_json,
    authenticated,
    elsewhere,
    json,
    read_call,
    serve_stream,
    text,
)
from mesoslite.master import MesosliteMaster
from mesoslite.protocol import MESOS_VERSION, InvalidCall, id_of, sub_message
from mesoslite.roles import role_error
from mesoslite.streams import EventStream

log = structlog.get_logger()

PATHS = ("/api/v1", "/api/v1/operator", "/master/api/v1")

# master.proto Call.Type values mesoslite does not implement (501 rather than 400).
NOT_IMPLEMENTED = frozenset(
    {
        "GET_LOGGING_LEVEL",
        "SET_LOGGING_LEVEL",
        "LIST_FILES",
        "READ_FILE",
        "GET_OPERATIONS",
        "RESERVE_RESOURCES",
        "UNRESERVE_RESOURCES",
        "CREATE_VOLUMES",
        "DESTROY_VOLUMES",
        "GROW_VOLUME",
        "SHRINK_VOLUME",
        "SET_QUOTA",
        "REMOVE_QUOTA",
    }
)


def _response(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, kind.lower(): body}


def version_info() -> dict[str, Any]:
    return {"version": MESOS_VERSION, "build_user": "mesoslite"}


def get_roles(master: MesosliteMaster) -> dict[str, Any]:
    """Every role with a framework, a weight or a quota: Role {name, weight, frameworks,
    resources} (a MULTI_ROLE framework in each of its roles, a task in its allocation role)."""
    names = set(master.weights) | set(master.quotas)
    names |= {r for f in master.frameworks.values() for r in f.roles}
    roles = []
    for name in sorted(names):
        fws = [f for f in master.frameworks.values() if name in f.roles]
        held: list[dict[str, Any]] = []
        for fw in fws:
            for task in fw.tasks.values():
                if not task.terminal and master.task_role(task) == name:
                    held += v1.resources(task.resources, name)
        roles.append(
            {
                "name": name,
                "weight": master.weights.get(name, 1.0),
                "frameworks": [{"value": f.id} for f in fws],
                "resources": held,
            }
        )
    return {"roles": roles}


def update_weights(master: MesosliteMaster, call: dict[str, Any]) -> None:
    """UPDATE_WEIGHTS: all checked first, then all applied (Mesos' weights handler)."""
    infos = sub_message(call, "update_weights").get("weight_infos")
    if not isinstance(infos, list):
        raise InvalidCall("Expecting 'update_weights.weight_infos' to be a list")
    checked: dict[str, float] = {}
    for i, info in enumerate(infos):
        where = f"update_weights.weight_infos[{i}]"
        role = info.get("role") if isinstance(info, dict) else None
        weight = info.get("weight") if isinstance(info, dict) else None
        if not isinstance(role, str):
            raise InvalidCall(f"Expecting '{where}.role' to be a string")
        error = "Role '*' has no weight to update" if role == "*" else role_error(role)
        if error is not None:
            raise InvalidCall(f"'{where}.role': {error}")
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not weight > 0:
            raise InvalidCall(f"'{where}.weight' must be a number > 0")
        checked[str(role)] = float(weight)
    for role, weight in checked.items():
        master.weights[role] = weight
        master.allocator.set_weight(role, weight)
    log.info("weights_updated", weights=checked)


def call_response(master: MesosliteMaster, call: dict[str, Any]) -> dict[str, Any] | None:
    """A non-SUBSCRIBE call on the leader: its Response, or None for an empty 200."""
    kind = call.get("type")
    if kind == "GET_HEALTH":
        return _response(kind, {"healthy": True})
    if kind == "GET_FLAGS":
        flags = [
            {"name": k, "value": str(v)} for k, v in sorted(flag_values(master.config).items())
        ]
        return _response(kind, {"flags": flags})
    if kind == "GET_VERSION":
        return _response(kind, {"version_info": version_info()})
    if kind == "GET_METRICS":
        sub_message(call, "get_metrics", required=False)
        values = metrics.snapshot(master, elected=True)
        return _response(kind, {"metrics": metrics.metric_list(values)})
    if kind == "GET_STATE":
        return _response(kind, v1.get_state(master))
    if kind == "GET_AGENTS":
        return _response(kind, v1.get_agents(master))
    if kind == "GET_FRAMEWORKS":
        return _response(kind, v1.get_frameworks(master))
    if kind == "GET_EXECUTORS":
        return _response(kind, v1.get_executors(master))
    if kind == "GET_TASKS":
        return _response(kind, v1.get_tasks(master))
    if kind == "GET_ROLES":
        return _response(kind, get_roles(master))
    if kind == "GET_WEIGHTS":
        infos = [{"role": r, "weight": w} for r, w in sorted(master.weights.items())]
        return _response(kind, {"weight_infos": infos})
    if kind == "GET_MASTER":
        body: dict[str, Any] = {
            "master_info": master.master_info(),
            "start_time": master.start_time,
        }
        if master.elected_time is not None:
            body["elected_time"] = master.elected_time
        return _response(kind, body)
    if kind == "UPDATE_WEIGHTS":
        update_weights(master, call)
        return None
    if kind == "GET_QUOTA":
        return _response(kind, quota.get_quota(master))
    if kind == "UPDATE_QUOTA":
        quota.update_quota(master, call)
        return None
    if kind == "TEARDOWN":
        fid = id_of(sub_message(call, "teardown"), "framework_id", "teardown")
        fw = master.frameworks.get(fid)
        if fw is None:
            raise InvalidCall("No framework found with specified ID")
        master.remove_framework(fw, "operator TEARDOWN")
        return None
    if kind == "MARK_AGENT_GONE":
        aid = id_of(sub_message(call, "mark_agent_gone"), "agent_id", "mark_agent_gone")
        agent = master.agents.get(aid)
        if agent is None:
            if aid in master.gone_agents:
                return None
            raise InvalidCall(f"Agent '{aid}' not found", 404)
        master.mark_agent_gone(agent, "marked gone by the operator")
        return None
    return maintenance.call_response(master, call)


def subscribe(master: MesosliteMaster) -> EventStream:
    """SUBSCRIBE: a stream starting with SUBSCRIBED, then the master's events."""
    stream = EventStream()
    stream.send(
        {
            "type": "SUBSCRIBED",
            "subscribed": {
                "get_state": v1.get_state(master),
                "heartbeat_interval_seconds": master.config.heartbeat_interval,
            },
        }
    )
    master.subscribers.add(stream)
    log.info("operator_subscribed", subscribers=len(master.subscribers.streams))
    return stream


async def operator_api(request: web.Request) -> web.StreamResponse:
    authenticated(request, READWRITE_REALM)
    redirect = elsewhere(request)
    if redirect is not None:
        return redirect
    call = await read_call(request)
    if isinstance(call, web.Response):
        return call
    kind = call.get("type")
    if not isinstance(kind, str) or not kind:
        return text(400, "Failed to validate master::Call: Expecting 'type' to be present")
    if kind in NOT_IMPLEMENTED:
        return text(501, f"mesoslite does not implement the operator call {kind}")
    if not accepts_json(request):
        return text(406, "Expecting 'Accept' to allow 'application/json'")
    master = request.app[LEADERSHIP_KEY].master
    started = time.monotonic()
    if kind == "SUBSCRIBE":
        stream = subscribe(master)
        return await serve_stream(request, stream, {}, lambda: master.subscribers.remove(stream))
    try:
        result = call_response(master, call)
    except InvalidCall as e:
        log.info("operator_call_rejected", type=kind, status=e.status, error=e.message)
        return text(e.status, e.message)
    log.debug("operator_call", type=kind, ms=round((time.monotonic() - started) * 1000, 1))
    if result is None:
        return web.Response(status=200)
    return json(result)
