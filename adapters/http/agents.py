"""Agents and worker migration: disable, drain and enable an agent; a cluster's migration pace.

`POST /api/v1/jobClusters/{name}/actions/updateMigrationStrategy` is Mantis' v1 route
(JobClustersRoute, body `{name, migrationConfig: {strategy, configString}, user}`, 204).
Mantis disables agents by group (`/api/v1/agentClusters`: the list of active values of an
agent attribute, Netflix' auto-scaling group); agents here carry no such attribute and an
operator drains one machine at a time, so each agent is named by its id or hostname, on
the shape of Mantis' cluster actions: `POST /api/v1/agents/{agent}/actions/disable|drain|
enable` with `{user}` (204). A disabled or draining agent gets no new workers (its offers are
declined) and its workers move off at their cluster's pace (core/migration.py); a draining
one is listed DRAINED once empty. `GET /api/v1/agents` lists the agents the master knows.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from adapters.http.bodies import AgentAction, UpdateMigrationStrategy
from adapters.http.keys import MASTER
from adapters.http.parsing import check_same, read_body
from adapters.http.responses import Json, json_response, no_content
from core.control import ControlPlane, Outcome
from core.errors import NotFound
from core.migration import AgentMode, WorkerMigrationConfig

AGENTS = "/api/v1/agents"
ACTIONS = {"disable": AgentMode.DISABLED, "drain": AgentMode.DRAINING, "enable": AgentMode.ACTIVE}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(
        "/api/v1/jobClusters/{name}/actions/updateMigrationStrategy", update_migration_strategy
    )
    router.add_get(AGENTS, list_agents)
    for action in ACTIONS:
        router.add_post(f"{AGENTS}/{{agent}}/actions/{action}", agent_action)


async def update_migration_strategy(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    master = request.app[MASTER]
    master.plane.cluster(name)  # 404 first, as Mantis
    body = await read_body(request, UpdateMigrationStrategy)
    check_same(body.name, "name", name)
    config = WorkerMigrationConfig.from_json(
        msgspec.to_builtins(body.migration_config), "migrationConfig"
    )
    user = body.user
    await master.call(lambda plane, now: plane.update_migration_config(name, config, user, now))
    return no_content()


def render_agent(plane: ControlPlane, agent_id: str, hostname: str) -> Json:
    mode = plane.agent_modes.get(agent_id, (AgentMode.ACTIVE, ""))[0]
    workers = [w.worker_id for w in plane.workers_on(agent_id)]
    shown = "DRAINED" if mode is AgentMode.DRAINING and not workers else mode.value
    return {"agentId": agent_id, "hostname": hostname, "mode": shown, "workers": workers}


async def list_agents(request: web.Request) -> web.Response:
    plane = request.app[MASTER].plane
    agents = [render_agent(plane, a, h) for a, h in plane.known_agents().items()]
    return json_response({"list": agents, "prev": None, "next": None, "total": len(agents)})


async def agent_action(request: web.Request) -> web.Response:
    """The path's agent: an agent id, else every agent with that hostname (404 if none)."""
    name = request.match_info["agent"]
    mode = ACTIONS[request.path.rsplit("/", 1)[1]]
    master = request.app[MASTER]
    known = master.plane.known_agents()
    chosen = {name: known[name]} if name in known else {a: h for a, h in known.items() if h == name}
    if not chosen:
        raise NotFound("agent", name)
    body = await read_body(request, AgentAction)
    user = body.user
    for agent_id, hostname in chosen.items():
        await master.call(_set_mode(agent_id, hostname, mode, user))
    return no_content()


def _set_mode(
    agent_id: str, hostname: str, mode: AgentMode, user: str
) -> Callable[[ControlPlane, float], Outcome]:
    return lambda plane, now: plane.set_agent_mode(agent_id, hostname, mode, user, now)
