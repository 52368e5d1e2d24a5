"""The aiohttp application of the master's HTTP API on a `MasterService`, and serving it.

Each route module adds its own routes on Mantis' v1 paths: worker_api.py (postJobStatus and
the SSE streams a worker reads), clusters.py, jobs.py and artifacts.py (the REST API),
job_output.py (a job's output through the master), job_status.py (jobStatusStream),
admin.py (masterInfo, healthcheck), cluster_views.py (a cluster's latest discovery info and
health), agents.py (agents disabled and drained, migration strategies), master_configs.py,
metrics.py (``/metrics``: Prometheus text), openapi.py
(`GET /api/v1/openapi.json`, documenting every route) and dashboard.py (the page at `/`).
Requests go through metrics.py (timed by route), then errors.py (every error in JSON, mapped
in one place), security.py (drive-by calls from web pages refused, whatever the token) and,
with an API token, auth.py.
No request header is ever logged: aiohttp's access log is off, and requests are logged by
method, path and status.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from aiohttp import web

from adapters.http import (
    admin,
    agents,
    cluster_views,
    clusters,
    dashboard,
    job_output,
    jobs,
    master_configs,
    metrics,
    openapi,
    security,
    worker_api,
)
from adapters.http.artifacts import ARTIFACTS, UPLOAD_TYPES, ArtifactStore
from adapters.http.artifacts import BASE as ARTIFACTS_PATH
from adapters.http.artifacts import add_routes as add_artifact_routes
from adapters.http.auth import bearer_auth
from adapters.http.errors import JsonErrorRunner, error_middleware
from adapters.http.job_sinks import PlaneSinks
from adapters.http.job_status import job_status_stream
from adapters.http.keys import MASTER
from adapters.http.worker_api import DEFAULT_HEARTBEAT_SECS
from service.master import MasterService


def create_app(
    master: MasterService,
    heartbeat_secs: float = DEFAULT_HEARTBEAT_SECS,
    *,
    artifacts: ArtifactStore | None = None,
    api_token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    instance_id: str = "",
) -> web.Application:
    """The master's HTTP API; artifact routes only with an `artifacts` store.

    `allowed_hosts` (names besides loopback ones) and `allowed_origins` (e.g. a console's
    `https://mantis.example` behind a proxy; they may also read the API: CORS) widen what
    security.py lets through.
    `instance_id`: echoed by masterInfo as `instanceId`.
    """
    allowed_origins = tuple(allowed_origins)
    guard = security.guard(allowed_hosts, allowed_origins, {ARTIFACTS_PATH: UPLOAD_TYPES})
    middlewares = [metrics.middleware(), error_middleware, guard]
    middlewares += [bearer_auth(api_token)] if api_token else []
    app = web.Application(middlewares=middlewares)
    app.on_response_prepare.append(security.no_cors_on_mutations)
    if allowed_origins:
        app.on_response_prepare.append(security.cors_reads(allowed_origins))
    app[MASTER] = master
    worker_api.add_routes(app, heartbeat_secs)
    clusters.add_routes(app.router)
    cluster_views.add_routes(app.router)
    agents.add_routes(app.router)
    master_configs.add_routes(app.router)
    jobs.add_routes(app.router)
    if artifacts is not None:
        app[ARTIFACTS] = artifacts
        add_artifact_routes(app.router)
    job_output.add_routes(app, PlaneSinks(master), master)
    app.router.add_get("/api/v1/jobStatusStream/{jobId}", job_status_stream)
    admin.add_routes(app, instance_id)
    metrics.add_routes(app)
    openapi.add_route(app, with_artifacts=artifacts is not None)
    dashboard.add_routes(app, auth=api_token is not None)
    app.on_shutdown.append(_close_streams)
    return app


# aiohttp raises the same LineTooLong for a long URL and a long header, naming its limit: the
# two limits differ so that the limit named tells which it was (a 414 or a 431).
MAX_URL_BYTES = 8192
MAX_FIELD_BYTES = 8190  # aiohttp's default, as Jetty's 8 KiB for Mantis' own master


async def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    listener: socket.socket | None = None,
) -> tuple[web.AppRunner, int]:
    """Start `app` on host:port (loopback by default), or on a copy of a bound `listener`
    socket, which stays open when this app stops: connections queue there for the next app
    (a follower handing its port to the leader it became refuses none). Returns the runner and
    the bound port."""
    runner = JsonErrorRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        max_line_size=MAX_URL_BYTES,
        max_field_size=MAX_FIELD_BYTES,
    )
    await runner.setup()
    site = (
        web.TCPSite(runner, host, port)
        if listener is None
        else web.SockSite(runner, listener.dup())
    )
    await site.start()
    return runner, int(runner.addresses[0][1])


async def _close_streams(app: web.Application) -> None:
    app[MASTER].watchers.close()
