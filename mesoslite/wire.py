"""The master's JSON wire format: pure parsing of v1 scheduler calls and mesoslite agent calls
into checked values (InvalidCall, a 400 naming the field, otherwise), and rendering of the
events and messages the master sends. Shapes follow include/mesos/v1/scheduler.proto and
mesos.proto; the checks and their messages follow Mesos' src/master/validation.cpp."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

import structlog

from mesoslite.protocol import (
    OPERATION_TYPES,
    TASK_STATES,
    InvalidCall,
    id_of,
    optional_id,
    refuse_seconds,
    sub_message,
)
from mesoslite.resources import (
    Attributes,
    ResourceError,
    Resources,
    attributes_from_mesos,
    attributes_to_mesos,
)
from mesoslite.state import AgentRecord, OfferRecord

log = structlog.get_logger()

STREAM_ID_HEADER = "Mesos-Stream-Id"
AGENT_SESSION_HEADER = "Mesoslite-Agent-Session"

Launch = tuple[str, dict[str, Any]]  # (operation type, TaskInfo)


@dataclass(frozen=True, slots=True)
class SubscribeCall:
    """A checked SUBSCRIBE: the FrameworkInfo, its id when re-subscribing, suppressed roles."""

    framework_info: dict[str, Any]
    framework_id: str | None
    suppressed_roles: list[Any]


@dataclass(frozen=True, slots=True)
class RegisterCall:
    """A checked agent REGISTER: its AgentInfo fields and the tasks it reports."""

    agent_id: str | None
    hostname: str
    port: int
    total: Resources
    attributes: Attributes
    tasks: dict[tuple[str, str], dict[str, Any]]  # (framework, task) ids -> reported entry


def parse_subscribe(call: dict[str, Any]) -> SubscribeCall:
    sub = sub_message(call, "subscribe")
    info = sub.get("framework_info")
    if not isinstance(info, dict):
        raise InvalidCall("Expecting 'subscribe.framework_info' to be present")
    for required in ("user", "name"):
        if not isinstance(info.get(required), str):
            raise InvalidCall(f"Expecting 'subscribe.framework_info.{required}' to be a string")
    timeout = info.get("failover_timeout", 0.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
        raise InvalidCall("'subscribe.framework_info.failover_timeout' must be a number >= 0")
    info_id = optional_id(info, "id", "subscribe.framework_info")
    call_id = optional_id(call, "framework_id")
    if info_id != call_id:
        raise InvalidCall("'framework_id' differs from 'subscribe.framework_info.id'")
    suppressed_roles = sub.get("suppressed_roles") or []
    if not isinstance(suppressed_roles, list):
        raise InvalidCall("'subscribe.suppressed_roles' must be a list of roles")
    return SubscribeCall(info, info_id, suppressed_roles)


def parse_accept(accept: dict[str, Any]) -> tuple[list[str], list[Launch], float]:
    """ACCEPT: the offer ids, the tasks to launch and the refuse filter's seconds."""
    offer_ids = accept.get("offer_ids") or []
    operations = accept.get("operations") or []
    if not isinstance(offer_ids, list) or not isinstance(operations, list):
        raise InvalidCall("'accept.offer_ids' and 'accept.operations' must be lists")
    ids = [id_of({"offer_id": o}, "offer_id", "accept.offer_ids[]") for o in offer_ids]
    launches = parse_operations(operations)
    return ids, launches, refuse_seconds(accept.get("filters"))


def parse_decline(decline: dict[str, Any]) -> tuple[list[str], float]:
    """DECLINE: the offer ids and the refuse filter's seconds."""
    offer_ids = decline.get("offer_ids") or []
    if not isinstance(offer_ids, list):
        raise InvalidCall("'decline.offer_ids' must be a list")
    ids = [id_of({"offer_id": o}, "offer_id", "decline.offer_ids[]") for o in offer_ids]
    return ids, refuse_seconds(decline.get("filters"))


def parse_kill(call: dict[str, Any]) -> tuple[str, Any]:
    """KILL: the task id and the kill policy as sent (None if absent)."""
    kill = sub_message(call, "kill")
    return id_of(kill, "task_id", "kill"), kill.get("kill_policy")


def parse_shutdown(call: dict[str, Any]) -> str:
    """SHUTDOWN: the executor id (an agent id must be there too)."""
    shutdown = sub_message(call, "shutdown")
    executor_id = id_of(shutdown, "executor_id", "shutdown")
    id_of(shutdown, "agent_id", "shutdown")
    return executor_id


def parse_acknowledge(call: dict[str, Any]) -> tuple[str, str]:
    """ACKNOWLEDGE: the task id and the acknowledged status uuid."""
    ack = sub_message(call, "acknowledge")
    task_id = id_of(ack, "task_id", "acknowledge")
    id_of(ack, "agent_id", "acknowledge")
    status_uuid = ack.get("uuid")
    if not isinstance(status_uuid, str) or not status_uuid:
        raise InvalidCall("Expecting 'acknowledge.uuid' to be present")
    return task_id, status_uuid


def parse_reconcile(call: dict[str, Any]) -> list[str]:
    """RECONCILE: the task ids asked about; none means implicit reconciliation."""
    wanted = sub_message(call, "reconcile", required=False).get("tasks") or []
    if not isinstance(wanted, list):
        raise InvalidCall("'reconcile.tasks' must be a list")
    return [id_of(t, "task_id", "reconcile.tasks[]") for t in wanted]


def parse_roles(call: dict[str, Any], field: str, default: tuple[str, ...]) -> list[str]:
    """SUPPRESS / REVIVE: the roles named (scheduler.proto `roles`); none means all of the
    framework's (`default`)."""
    roles = sub_message(call, field, required=False).get("roles") or list(default)
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidCall(f"'{field}.roles' must be a list of role names")
    return roles


def parse_message(call: dict[str, Any]) -> tuple[str, str, str]:
    """MESSAGE: the agent id, the executor id and the data (base64, passed on as is)."""
    message = sub_message(call, "message")
    agent_id = id_of(message, "agent_id", "message")
    executor_id = id_of(message, "executor_id", "message")
    if not isinstance(message.get("data"), str):
        raise InvalidCall("Expecting 'message.data' (base64) to be present")
    return agent_id, executor_id, str(message["data"])


def parse_operations(operations: list[Any]) -> list[Launch]:
    """The TaskInfos to launch, as (operation type, TaskInfo); malformed ones are a 400."""
    launches: list[Launch] = []
    for i, op in enumerate(operations):
        where = f"accept.operations[{i}]"
        if not isinstance(op, dict) or op.get("type") not in OPERATION_TYPES:
            raise InvalidCall(f"'{where}.type' must be one of {', '.join(sorted(OPERATION_TYPES))}")
        if op["type"] == "LAUNCH":
            infos = sub_message(op, "launch").get("task_infos")
            kind = "LAUNCH"
        elif op["type"] == "LAUNCH_GROUP":
            infos = sub_message(op, "launch_group").get("task_group", {}).get("tasks")
            kind = "LAUNCH_GROUP"
        else:
            log.warning("operation_not_supported", type=op["type"])
            continue
        if not isinstance(infos, list):
            raise InvalidCall(f"Expecting '{where}' to carry a list of TaskInfo")
        for j, tinfo in enumerate(infos):
            at = f"{where}.task_infos[{j}]"
            if not isinstance(tinfo, dict):
                raise InvalidCall(f"'{at}' must be a TaskInfo object")
            if not isinstance(tinfo.get("name"), str):
                raise InvalidCall(f"Expecting '{at}.name' to be present")
            id_of(tinfo, "task_id", at)
            id_of(tinfo, "agent_id", at)
            resources = tinfo.get("resources", [])
            if not isinstance(resources, list) or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and "type" in r
                for r in resources
            ):
                raise InvalidCall(f"'{at}.resources' must be a list of Resource with name and type")
            launches.append((kind, tinfo))
    return launches


def parse_status(status: Any) -> dict[str, Any]:
    """A TaskStatus from an agent: a task id and a known state at least."""
    if not isinstance(status, dict):
        raise InvalidCall("Expecting 'status' to be present")
    id_of(status, "task_id", "status")
    if status.get("state") not in TASK_STATES:
        raise InvalidCall(f"'status.state' {status.get('state')!r} is not a TaskState")
    return status


def parse_status_updates(call: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An agent's UPDATE: (framework id, TaskStatus) pairs."""
    updates = sub_message(call, "update").get("updates")
    if not isinstance(updates, list):
        raise InvalidCall("Expecting 'update.updates' to be a list")
    return [
        (id_of(item, "framework_id", "update.updates[]"), parse_status(item.get("status")))
        for item in updates
    ]


def parse_registration(call: dict[str, Any]) -> RegisterCall:
    """An agent's REGISTER (first time, or again with its id)."""
    reg = sub_message(call, "register")
    info = reg.get("agent_info")
    if not isinstance(info, dict):
        raise InvalidCall("Expecting 'register.agent_info' to be present")
    try:
        total = Resources.from_mesos(info.get("resources") or [])
        attributes = attributes_from_mesos(info.get("attributes") or [])
    except (ResourceError, KeyError, TypeError) as e:
        raise InvalidCall(f"Invalid agent resources or attributes: {e}") from None
    hostname = info.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        raise InvalidCall("Expecting 'register.agent_info.hostname' to be present")
    port = info.get("port", 5051)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise InvalidCall("'register.agent_info.port' must be a port number")
    reported = parse_reported_tasks(reg.get("tasks") or [])
    aid = optional_id(info, "id", "register.agent_info")
    return RegisterCall(aid, hostname, port, total, attributes, reported)


def parse_reported_tasks(tasks: Any) -> dict[tuple[str, str], dict[str, Any]]:
    if not isinstance(tasks, list):
        raise InvalidCall("'register.tasks' must be a list")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, entry in enumerate(tasks):
        where = f"register.tasks[{i}]"
        if not isinstance(entry, dict):
            raise InvalidCall(f"'{where}' must be an object")
        finfo = entry.get("framework_info")
        tinfo = entry.get("task")
        if not isinstance(finfo, dict) or not isinstance(tinfo, dict):
            raise InvalidCall(f"'{where}' must carry 'framework_info' and 'task' objects")
        fid = id_of(finfo, "id", f"{where}.framework_info")
        tid = id_of(tinfo, "task_id", f"{where}.task")
        state = entry.get("state")
        if state not in TASK_STATES:
            raise InvalidCall(f"'{where}.state' {state!r} is not a TaskState")
        updates = [parse_status(s) for s in entry.get("updates") or []]
        if any("uuid" not in s for s in updates):
            raise InvalidCall(f"'{where}.updates' must all carry a uuid")
        try:
            resources = Resources.from_mesos(tinfo.get("resources") or [])
        except ResourceError as e:
            raise InvalidCall(f"'{where}.task.resources': {e}") from None
        out[(fid, tid)] = {
            "framework_info": finfo,
            "task": tinfo,
            "state": state,
            "updates": updates,
            "resources": resources,
        }
    return out


def task_id_of(tinfo: dict[str, Any]) -> str:
    return str(tinfo["task_id"]["value"])


def update_event(status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "UPDATE", "update": {"status": status}}


def ipv4_as_uint32(host: str) -> int:
    """MasterInfo.ip: the IPv4 address packed in network order, read as a host uint32."""
    try:
        packed = ipaddress.IPv4Address(host).packed
    except ValueError:
        packed = ipaddress.IPv4Address("127.0.0.1").packed
    value: int = struct.unpack("=I", packed)[0]
    return value


def offer_message(offer: OfferRecord, agent: AgentRecord, role: str) -> dict[str, Any]:
    """An Offer as the OFFERS event carries it, its resources allocated to `role`."""
    resources = offer.resources.to_mesos()
    for r in resources:
        r["allocation_info"] = {"role": role}
    return {
        "id": {"value": offer.id},
        "framework_id": {"value": offer.framework_id},
        "agent_id": {"value": agent.id},
        "hostname": agent.hostname,
        "url": {
            "scheme": "http",
            "path": f"/slave({agent.id})",
            "address": {"hostname": agent.hostname, "port": agent.port},
        },
        "resources": resources,
        "attributes": attributes_to_mesos(agent.attributes),
        "executor_ids": [],
        "allocation_info": {"role": role},
    }
