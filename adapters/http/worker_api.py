"""What a worker needs of the master: postJobStatus and the SSE streams of Mantis' v1 paths.

Routes (Mantis' v1 JobsRoute, JobDiscoveryStreamRoute, LastSubmittedJobIdStreamRoute):

- `POST /api/v1/jobs/actions/postJobStatus`: a worker's status or heartbeat; 204.
- `GET /api/v1/jobDiscoveryStream/{jobId}?sendHB=`: SSE of JobSchedulingInfo (Started
  workers only): the current info at once, then one frame per change; ends after the final
  info of a terminal job.
- `GET /api/v1/lastSubmittedJobIdStream/{cluster}?sendHB=`: SSE of `{"name", "jobId"}`: the
  cluster's last submitted job at once (if any), then one frame per new submission.

Frames are `data: <json>\\n\\n`. With `sendHB=true` a stream also sends Mantis' heartbeat
frames every `heartbeat_secs` (default 29 s: the 30 s idle timeout minus one):
`data: {"jobId":"HB_JobId","workerAssignments":{}}` on the discovery stream and
`data: {"name":"HB_JobId","jobId":"HB_JobId"}` on the last-submitted stream (Mantis'
`JobSchedulingInfo.HB_JobId`; Mantis clients drop these).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web

from adapters.http.bodies import JobStatus
from adapters.http.keys import MASTER
from adapters.http.parsing import read_body
from adapters.http.rendering import render_job_scheduling_info
from adapters.http.responses import no_content
from adapters.http.status import parse_status
from common.sse import HB_JOB_ID, HEADERS, frame
from core.control import ControlPlane
from core.errors import InvalidRequest

log = structlog.get_logger()

HEARTBEAT_SECS = web.AppKey("heartbeat_secs", float)
STATUS_PATH = "/api/v1/jobs/actions/postJobStatus"
DEFAULT_HEARTBEAT_SECS = 29.0


def add_routes(app: web.Application, heartbeat_secs: float) -> None:
    app[HEARTBEAT_SECS] = heartbeat_secs
    app.router.add_post(STATUS_PATH, post_job_status)
    app.router.add_get("/api/v1/jobDiscoveryStream/{jobId}", job_discovery_stream)
    app.router.add_get("/api/v1/lastSubmittedJobIdStream/{cluster}", last_submitted_stream)


# ---------------------------------------------------------------------- worker status


async def post_job_status(request: web.Request) -> web.StreamResponse:
    command = parse_status(await read_body(request, JobStatus, strict=True))
    await request.app[MASTER].call(command)
    return no_content()


# ---------------------------------------------------------------------- streams


def _send_hb(request: web.Request) -> bool:
    raw = request.query.get("sendHB", "false").lower()
    if raw not in ("true", "false"):
        raise InvalidRequest("sendHB", f"must be true or false, got {raw!r}")
    return raw == "true"


async def _open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers=HEADERS)
    await resp.prepare(request)
    return resp


async def _stream(
    request: web.Request,
    signal: asyncio.Event,
    current: Callable[[ControlPlane], object | None],
    done: Callable[[ControlPlane], bool],
    heartbeat: object,
    send_hb: bool,
) -> web.StreamResponse:
    """Send `current` when it changes (after each wake-up) until `done`; heartbeats between."""
    master = request.app[MASTER]
    interval = request.app[HEARTBEAT_SECS]
    resp = await _open_stream(request)
    loop = asyncio.get_running_loop()
    next_hb = loop.time() + interval
    last: object | None = None
    try:
        while not master.watchers.closing:
            signal.clear()
            value = current(master.plane)
            if value is not None and value != last:
                await resp.write(frame(value))
                last = value
            if done(master.plane):
                break
            timeout = max(next_hb - loop.time(), 0.0) if send_hb else None
            try:
                await asyncio.wait_for(signal.wait(), timeout)
            except TimeoutError:
                await resp.write(frame(heartbeat))
                next_hb = loop.time() + interval
    except ConnectionResetError:
        pass  # the client went away
    except Exception:
        # The headers are sent: no error response is possible any more, so end the stream
        # (the client reconnects) rather than let the middleware answer a second time.
        log.exception("sse_stream_failed", path=request.path)
    return resp


async def job_discovery_stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    jid = request.match_info["jobId"]
    master.plane.job(jid)  # 404 for an unknown job
    send_hb = _send_hb(request)  # a 400 must come before the stream starts
    with master.watchers.job(jid) as signal:
        return await _stream(
            request,
            signal,
            lambda plane: render_job_scheduling_info(plane.scheduling_info(jid)),
            lambda plane: plane.job(jid).terminal,
            {"jobId": HB_JOB_ID, "workerAssignments": {}},
            send_hb,
        )


async def last_submitted_stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    name = request.match_info["cluster"]
    master.plane.cluster(name)  # 404 for an unknown cluster
    send_hb = _send_hb(request)

    def current(plane: ControlPlane) -> object | None:
        jid = master.last_submitted.get(name)
        return {"name": name, "jobId": jid} if jid else None

    with master.watchers.cluster(name) as signal:
        return await _stream(
            request,
            signal,
            current,
            lambda plane: name not in plane.clusters,
            {"name": HB_JOB_ID, "jobId": HB_JOB_ID},
            send_hb,
        )
