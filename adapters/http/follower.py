"""What a master that does not lead serves: who leads, and the way to it.

As Mantis' followers do, every REST call is redirected to the leader: 302 for a read, 307 for
a call with a body (a 302 lets clients turn a POST into a GET; a 307 keeps the method and the
body, so a worker's status or a submission reaches the leader whole). While no leader is
known the answer is 503. Job output (`/jobconnectbyid`, `/jobconnectbyname`) is served here
too, from the leader's discovery streams (adapters.http.job_sinks), as Mantis' API tier
serves it beside the masters. `GET /api/v1/masterInfo` says who leads; the health check is 503,
since a follower serves no jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from adapters.http import job_output, security
from adapters.http.artifacts import BASE as ARTIFACTS_PATH
from adapters.http.artifacts import UPLOAD_TYPES
from adapters.http.errors import error_middleware
from adapters.http.job_sinks import LeaderSinks
from adapters.http.responses import error_response, json_response
from common.master_location import MasterLocation

Leader = Callable[[], Mapping[str, Any] | None]
LEADER: web.AppKey[Leader] = web.AppKey("leader")
INSTANCE_ID = web.AppKey("follower_instance_id", str)
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def create_follower_app(
    leader: Leader,
    location: MasterLocation,
    allowed_hosts: Iterable[str] = (),
    instance_id: str = "",
) -> web.Application:
    """`leader()` gives the current leader's description (with its `url`), or None;
    `location` is moved to each new leader's URL ("" while none is known). `instance_id` is
    echoed by masterInfo, as the leader's is (adapters.http.admin)."""
    guard = security.guard(allowed_hosts, body_types={ARTIFACTS_PATH: UPLOAD_TYPES})
    app = web.Application(middlewares=[error_middleware, guard])
    app[LEADER] = leader
    app[INSTANCE_ID] = instance_id
    app.router.add_get("/api/v1/masterInfo", master_info)
    app.router.add_get("/api/v1/healthcheck", healthcheck)
    sinks = LeaderSinks(location)
    job_output.add_routes(app, sinks, None)
    app.on_cleanup.append(lambda _: sinks.close())
    app.router.add_route("*", ARTIFACTS_PATH, to_leader)  # so the guard knows its upload types
    app.router.add_route("*", "/{tail:.*}", to_leader)
    return app


async def master_info(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE_ID]
    body = {
        "isLeader": False,
        "leader": request.app[LEADER](),
        **({"instanceId": instance} if instance else {}),
    }
    return json_response(body)


async def healthcheck(request: web.Request) -> web.Response:
    leader = request.app[LEADER]()
    where = f"following the leader at {leader['url']}" if leader else "no leader is known yet"
    return json_response({"isHealthy": False, "failureReason": where}, status=503)


async def to_leader(request: web.Request) -> web.StreamResponse:
    leader = request.app[LEADER]()
    if not leader or not leader.get("url"):
        return error_response(503, "no leader is known yet; try again shortly")
    status = 302 if request.method in READS else 307
    location = str(leader["url"]).rstrip("/") + request.path_qs
    return web.Response(status=status, headers={"Location": location})
