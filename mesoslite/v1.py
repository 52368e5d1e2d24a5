"""The master's state in the v1 operator API's JSON shapes (include/mesos/v1/master/master.proto
Response.GetTasks/GetAgents/GetFrameworks/GetExecutors/GetState, and mesos.proto's Task,
AgentInfo, TimeInfo): ids as `{"value": ...}`, resources as lists of Resource, times as
`{"nanoseconds": n}`. Pure rendering: nothing here changes the master.

GET_EXECUTORS lists the custom executors each framework runs (mesoslite.state keeps them as
Mesos' master does); a command task's executor is not listed, as in Mesos. There are no
`orphan_executors` (deprecated in master.proto; Mesos' master no longer fills it, and an empty
repeated field is left out of its JSON).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from mesoslite import multirole
from mesoslite.protocol import MESOS_VERSION
from mesoslite.resources import Resources, attributes_to_mesos
from mesoslite.state import AgentRecord, FrameworkRecord, TaskRecord, executor_id
from mesoslite.wire import offer_message

if TYPE_CHECKING:
    from mesoslite.master import MesosliteMaster


def time_info(seconds: float) -> dict[str, int]:
    return {"nanoseconds": int(seconds * 1e9)}


@functools.lru_cache(maxsize=4096)
def resources(r: Resources, role: str | None = None) -> list[dict[str, Any]]:
    """A Resource list; with `role`, allocated to it (`allocation_info`), as Mesos reports
    what frameworks hold. Cached (tasks mostly ask for the same few amounts), so the list is
    shared: rendered, never changed."""
    out = r.to_mesos()
    if role is not None:
        for item in out:
            item["allocation_info"] = {"role": role}
    return out


def task(t: TaskRecord, fw: FrameworkRecord | None = None) -> dict[str, Any]:
    """A Task (mesos.proto): `statuses` as TaskStatus, `status_update_state` the state of the
    update the framework is being sent (its oldest unacknowledged one), else the latest."""
    info = t.info
    out: dict[str, Any] = {
        "name": info.get("name", ""),
        "task_id": {"value": t.id},
        "framework_id": {"value": t.framework_id},
        "agent_id": {"value": t.agent_id},
        "state": t.state,
        "resources": resources(
            t.resources, multirole.allocation_role(t.info, fw.role) if fw is not None else None
        ),
        "statuses": [
            {
                "task_id": {"value": t.id},
                "agent_id": {"value": t.agent_id},
                "state": s["state"],
                "timestamp": s.get("timestamp") or 0.0,
                **({"healthy": s["healthy"]} if "healthy" in s else {}),
            }
            for s in t.statuses
        ],
    }
    eid = executor_id(info)
    if eid:
        out["executor_id"] = {"value": eid}
    queue = fw.updates.get(t.id) if fw is not None else None
    out["status_update_state"] = queue[0].status["state"] if queue else t.state
    for key in ("labels", "discovery", "container", "health_check", "kill_policy"):
        if key in info:
            out[key] = info[key]
    if fw is not None and isinstance(fw.info.get("user"), str):
        out["user"] = fw.info["user"]
    return out


def agent_info(a: AgentRecord) -> dict[str, Any]:
    return {
        "id": {"value": a.id},
        "hostname": a.hostname,
        "port": a.port,
        "resources": a.total.to_mesos(),
        "attributes": attributes_to_mesos(a.attributes),
    }


def agent(a: AgentRecord) -> dict[str, Any]:
    """Response.GetAgents.Agent: `active` is false while disconnected or deactivated;
    `drain_info` while it drains or once drained (mesoslite.maintenance)."""
    out: dict[str, Any] = {
        "agent_info": agent_info(a),
        "active": a.connected and not a.deactivated,
        "deactivated": a.deactivated,
        "version": MESOS_VERSION,
        "pid": a.pid,
        "registered_time": time_info(a.registered_time),
        "total_resources": a.total.to_mesos(),
        "allocated_resources": a.used.to_mesos(),
        "offered_resources": a.offered.to_mesos(),
        "capabilities": [],
    }
    if a.reregistered_time is not None:
        out["reregistered_time"] = time_info(a.reregistered_time)
    if a.drain is not None:
        out["drain_info"] = a.drain
    return out


def framework(fw: FrameworkRecord, agents: dict[str, AgentRecord] | None = None) -> dict[str, Any]:
    """Response.GetFrameworks.Framework; offers only with `agents` given (events never carry
    them, as Mesos' do not)."""
    used = Resources()
    for t in fw.tasks.values():
        if not t.terminal:
            used = used + t.resources
    offered = Resources()
    for o in fw.offers.values():
        offered = offered + o.resources
    out: dict[str, Any] = {
        "framework_info": fw.info,
        "active": fw.connected,
        "connected": fw.connected,
        "recovered": fw.recovered,
        "registered_time": time_info(fw.registered_time),
    }
    if fw.reregistered_time is not None:
        out["reregistered_time"] = time_info(fw.reregistered_time)
    if fw.unregistered_time is not None:
        out["unregistered_time"] = time_info(fw.unregistered_time)
    if agents is not None:
        out["offers"] = [
            offer_message(o, agents[o.agent_id], o.role)
            for o in fw.offers.values()
            if o.agent_id in agents
        ]
        out["inverse_offers"] = list(fw.inverse_offers.values())
        out["allocated_resources"] = resources(used, fw.role)
        out["offered_resources"] = resources(offered, fw.role)
    return out


def get_tasks(master: MesosliteMaster) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    unreachable: list[dict[str, Any]] = []
    completed: list[dict[str, Any]] = []
    for fw in master.frameworks.values():
        tasks += [task(t, fw) for t in fw.tasks.values()]
        unreachable += [task(t, fw) for t in fw.unreachable_tasks.values()]
        completed += [task(t, fw) for t in fw.completed_tasks]
    for fw in master.completed_frameworks:
        completed += [task(t, fw) for t in fw.completed_tasks]
    return {"tasks": tasks, "unreachable_tasks": unreachable, "completed_tasks": completed}


def get_agents(master: MesosliteMaster) -> dict[str, Any]:
    return {"agents": [agent(a) for a in master.agents.values()], "recovered_agents": []}


def get_frameworks(master: MesosliteMaster) -> dict[str, Any]:
    return {
        "frameworks": [framework(f, master.agents) for f in master.frameworks.values()],
        "completed_frameworks": [framework(f, master.agents) for f in master.completed_frameworks],
    }


def get_executors(master: MesosliteMaster) -> dict[str, Any]:
    """Response.GetExecutors: every framework's executors with their agent (Mesos'
    Master::Http::_getExecutors in src/master/http.cpp)."""
    executors = [
        {"executor_info": info, "agent_id": {"value": aid}}
        for fw in master.frameworks.values()
        for aid, info in fw.executors_on()
    ]
    return {"executors": executors}


def get_state(master: MesosliteMaster) -> dict[str, Any]:
    return {
        "get_tasks": get_tasks(master),
        "get_executors": get_executors(master),
        "get_frameworks": get_frameworks(master),
        "get_agents": get_agents(master),
    }
