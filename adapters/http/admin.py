"""The master's own routes: `GET /api/v1/masterInfo` (Mantis' MasterDescription) and healthcheck."""

from __future__ import annotations

import socket

from aiohttp import web

from adapters.http.keys import MASTER
from adapters.http.rendering import ms
from adapters.http.responses import json_response
from adapters.http.worker_api import STATUS_PATH

CREATED_AT = web.AppKey("created_at", float)
INSTANCE_ID = web.AppKey("instance_id", str)


def add_routes(app: web.Application, instance_id: str = "") -> None:
    """`instance_id` is echoed as `instanceId`, so that a supervisor (mantis up) can tell its
    own master from another server answering on the same port."""
    app[CREATED_AT] = app[MASTER].clock()
    app[INSTANCE_ID] = instance_id
    app.router.add_get("/api/v1/masterInfo", master_info)
    app.router.add_get("/api/v1/healthcheck", healthcheck)


async def master_info(request: web.Request) -> web.Response:
    """Mantis' MasterDescription, with the address and port this request came in on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host_ip, port = (str(sockname[0]), int(sockname[1])) if sockname else ("127.0.0.1", 0)
    authority = f"[{host_ip}]:{port}" if ":" in host_ip else f"{host_ip}:{port}"
    return json_response(
        {
            "hostname": socket.gethostname(),
            "hostIP": host_ip,
            "apiPort": port,
            "schedInfoPort": port,
            "apiPortV2": port,
            "consolePort": port,
            "apiStatusUri": STATUS_PATH.lstrip("/"),
            "createTime": ms(request.app[CREATED_AT]),
            "fullApiStatusUri": f"http://{authority}{STATUS_PATH}",
            "isLeader": True,  # a master that does not lead serves adapters.http.follower
            **({"instanceId": request.app[INSTANCE_ID]} if request.app[INSTANCE_ID] else {}),
        }
    )


async def healthcheck(request: web.Request) -> web.Response:
    """200 while serving; 503 once the master is shutting down or while its store cannot write."""
    master = request.app[MASTER]
    if master.watchers.closing:
        return json_response({"isHealthy": False, "failureReason": "shutting down"}, status=503)
    if not master.healthy:
        return json_response({"isHealthy": False, "failureReason": master.last_error}, status=503)
    return json_response({"isHealthy": True, "failureReason": None})
