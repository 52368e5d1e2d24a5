"""The master's read-only JSON endpoints besides `/master/state`, as Mesos'
src/master/readonly_handler.cpp and http.cpp serve them (each also without the `/master`
prefix): `/master/state-summary`, `/master/frameworks` (`?framework_id=`), `/master/slaves`
(`?slave_id=`), `/master/tasks` (`?framework_id=`, `task_id`, `limit` (100), `offset` (0),
`order` `asc` or `des` (the default): active, unreachable and completed tasks by their first
status' time), `/master/roles`, `/master/flags` and `/metrics/snapshot` (mesoslite.metrics).

Where Mesos ignores a `limit`, `offset` or `order` it cannot parse, mesoslite answers 400
naming the parameter. A standby redirects these to the leader (307, or 503 without one), except
`/master/flags` and `/metrics/snapshot`, which it answers itself as Mesos' standbys do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mesoslite import metrics, quota
from mesoslite.flags import flag_values
from mesoslite.httputil import LEADERSHIP_KEY, elsewhere, json, text
from mesoslite.master import MesosliteMaster
from mesoslite.operator import get_roles
from mesoslite.protocol import TASK_STATES
from mesoslite.resources import Resources
from mesoslite.state import (
    FrameworkRecord,
    TaskRecord,
    agent_json,
    framework_json,
    resources_json,
    task_json,
)

TASK_LIMIT = 100  # Mesos' default for /tasks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _on_leader(render: Callable[[MesosliteMaster, web.Request], web.Response]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        redirect = elsewhere(request)
        if redirect is not None:
            return redirect
        return render(request.app[LEADERSHIP_KEY].master, request)

    return handler


def _count(tasks: list[TaskRecord]) -> dict[str, int]:
    counts = dict.fromkeys(sorted(TASK_STATES), 0)
    for t in tasks:
        counts[t.state] += 1
    return counts


def state_summary(master: MesosliteMaster, request: web.Request) -> web.Response:
    frameworks = list(master.frameworks.values())
    slaves = []
    for a in master.agents.values():
        tasks = list(a.tasks.values())
        slaves.append(
            {
                "id": a.id,
                "pid": a.pid,
                "hostname": a.hostname,
                "registered_time": a.registered_time,
                "resources": resources_json(a.total),
                "used_resources": resources_json(a.used),
                "offered_resources": resources_json(a.offered),
                "attributes": dict(a.attributes),
                "active": a.connected and not a.deactivated,
                "deactivated": a.deactivated,
                **_count(tasks),
                "framework_ids": sorted({t.framework_id for t in tasks}),
            }
        )
    summary = []
    for fw in frameworks:
        tasks = list(fw.tasks.values()) + list(fw.completed_tasks)
        offered = Resources()
        for o in fw.offers.values():
            offered = offered + o.resources
        summary.append(
            {
                "id": fw.id,
                "name": fw.info.get("name", ""),
                "hostname": fw.info.get("hostname", ""),
                "active": fw.connected,
                "used_resources": _sum_used([fw]),
                "offered_resources": resources_json(offered),
                "webui_url": fw.info.get("webui_url", ""),
                **_count(tasks),
                "slave_ids": sorted({t.agent_id for t in fw.tasks.values()}),
            }
        )
    return json(
        {
            "hostname": master.config.advertised_host,
            "slaves": slaves,
            "frameworks": summary,
        }
    )


def frameworks(master: MesosliteMaster, request: web.Request) -> web.Response:
    wanted = request.query.get("framework_id")

    def pick(fws: list[FrameworkRecord]) -> list[dict[str, Any]]:
        return [framework_json(f, 0.0) for f in fws if wanted is None or f.id == wanted]

    return json(
        {
            "frameworks": pick(list(master.frameworks.values())),
            "completed_frameworks": pick(list(master.completed_frameworks)),
            "unregistered_frameworks": [],
        }
    )


def slaves(master: MesosliteMaster, request: web.Request) -> web.Response:
    wanted = request.query.get("slave_id")
    chosen = [agent_json(a) for a in master.agents.values() if wanted is None or a.id == wanted]
    return json({"slaves": chosen, "recovered_slaves": []})


def _natural(request: web.Request, name: str, default: int) -> int | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        return text(400, f"Query parameter '{name}' must be a non-negative integer, got {raw!r}")
    return value


def tasks(master: MesosliteMaster, request: web.Request) -> web.Response:
    limit = _natural(request, "limit", TASK_LIMIT)
    offset = _natural(request, "offset", 0)
    if isinstance(limit, web.Response):
        return limit
    if isinstance(offset, web.Response):
        return offset
    order = request.query.get("order", "des")
    if order not in ("asc", "des"):
        return text(400, f"Query parameter 'order' must be 'asc' or 'des', got {order!r}")
    framework_id = request.query.get("framework_id")
    task_id = request.query.get("task_id")
    chosen: list[TaskRecord] = []
    for fw in [*master.frameworks.values(), *master.completed_frameworks]:
        if framework_id is not None and fw.id != framework_id:
            continue
        for t in [*fw.tasks.values(), *fw.unreachable_tasks.values(), *fw.completed_tasks]:
            if task_id is None or t.id == task_id:
                chosen.append(t)

    def first_seen(t: TaskRecord) -> float:
        return float(t.statuses[0].get("timestamp") or 0.0) if t.statuses else 0.0

    chosen.sort(key=first_seen, reverse=order == "des")
    return json({"tasks": [task_json(t) for t in chosen[offset : offset + limit]]})


def roles(master: MesosliteMaster, request: web.Request) -> web.Response:
    out = []
    for role in get_roles(master)["roles"]:
        name = role["name"]
        held = [f for f in master.frameworks.values() if name in f.roles]
        entry = {
            "name": name,
            "weight": role["weight"],
            "frameworks": [f.id for f in held],
            "resources": resources_json(Resources.from_mesos(role["resources"])),
        }
        if name in master.quotas:  # Mesos 1.9's /roles `quota`
            entry["quota"] = quota.role_quota(master, name)
        out.append(entry)
    return json({"roles": out})


def _sum_used(fws: list[FrameworkRecord]) -> dict[str, Any]:
    total = Resources()
    for fw in fws:
        for t in fw.tasks.values():
            if not t.terminal:
                total = total + t.resources
    return resources_json(total)


async def flags(request: web.Request) -> web.Response:
    master = request.app[LEADERSHIP_KEY].master
    values = {k: str(v) for k, v in sorted(flag_values(master.config).items())}
    return json({"flags": values})


async def metrics_snapshot(request: web.Request) -> web.Response:
    leadership = request.app[LEADERSHIP_KEY]
    return json(metrics.snapshot(leadership.master, leadership.leading))


def add_routes(app: web.Application) -> None:
    on_leader = {
        "state-summary": state_summary,
        "frameworks": frameworks,
        "slaves": slaves,
        "tasks": tasks,
        "roles": roles,
    }
    for name, render in on_leader.items():
        handler = _on_leader(render)
        for prefix in ("/master/", "/"):
            app.router.add_get(prefix + name, handler)
            app.router.add_get(prefix + name + ".json", handler)
    app.router.add_get("/master/flags", flags)
    app.router.add_get("/flags", flags)
    app.router.add_get("/metrics/snapshot", metrics_snapshot)
