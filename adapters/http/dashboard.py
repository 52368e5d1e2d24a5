"""The web dashboard: a page at `/` and the one master-wide stream it reads.

- `GET /`: adapters/http/dashboard/index.html; `GET /dashboard/{file}`: its script and style
  (plain ES modules, nothing to build). The page's answers carry a Content-Security-Policy
  (its own scripts only, no inline code, connections to this origin only) and
  `X-Frame-Options: DENY`, so no other site can frame its kill and scale buttons.
- `GET /api/v1/dashboard/stream`: SSE, every event a JSON object with a `type`:
  `state`, everything the page shows but metrics (clusters, active and recent jobs in Mantis'
  job view of `GET /api/v1/jobs/{jobId}`, whether mutations need the API token), sent when
  it connects and whenever the master's state changed (`Watchers.anything`: a burst of
  changes is coalesced into one event, and an unchanged state is not sent again); and
  `metrics`, the workers' last heartbeat payloads summed per stage (events/s from
  `WorkerMetrics.RPS`, drops from `IncomingDataDrop.droppedCount`, CPU cores used and
  allotted from `ResourceUsage`), every HEARTBEAT_SECS: the stream's heartbeat is a sample.
The page changes things through the REST API (submit, kill, scaleStage), as any client does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson
from aiohttp import web

from adapters.http.keys import MASTER
from adapters.http.rendering import ms, render_job
from adapters.http.responses import Json
from common.sse import HEADERS, frame
from core.autoscaling import parse_report
from core.control import ControlPlane
from core.errors import NotFound
from core.job import JobRecord

STATIC = Path(__file__).with_name("dashboard")
STREAM = "/api/v1/dashboard/stream"
COALESCE_SECS = 0.1
"""After a change, wait this long for the rest of its burst before rendering."""
RENDER_SHARE = 4
"""...or this many times the last render's time, if longer: a big state under constant change
costs each open page at most a fifth of the master's loop."""
HEARTBEAT_SECS = 2.0
"""How often the metrics sample (and so a heartbeat) goes out."""
RECENT_TERMINAL_JOBS = 20
"""Ended jobs shown beside the active ones, newest first."""
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
AUTH = web.AppKey("dashboard_auth", bool)


def add_routes(app: web.Application, *, auth: bool) -> None:
    """`auth`: the master has an API token (the page asks for it before changing anything)."""
    app[AUTH] = auth
    app.router.add_get("/", index)
    app.router.add_get("/dashboard/{file}", static_file)
    app.router.add_get(STREAM, stream)


async def index(request: web.Request) -> web.FileResponse:
    return _file("index.html")


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in {p.name for p in STATIC.iterdir()}:  # no path outside the folder
        raise NotFound("file", name[:100])
    return _file(name)


def _file(name: str) -> web.FileResponse:
    path = STATIC / name
    headers = {**PAGE_HEADERS, "Content-Type": STATIC_TYPES.get(path.suffix, "text/plain")}
    return web.FileResponse(path, headers=headers)


async def stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    auth = request.app[AUTH]
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    last_state = b""
    render_secs = 0.0
    next_sample = 0.0
    dirty = True
    with master.watchers.anything() as changed:
        try:
            while not master.watchers.closing:
                if dirty:  # rendered only after a change, sent only if it shows
                    changed.clear()
                    began = time.monotonic()
                    state = orjson.dumps(state_view(master.plane, auth))
                    render_secs = time.monotonic() - began
                    if state != last_state:
                        await response.write(frame(state))
                        last_state = state
                    dirty = False
                now = time.monotonic()
                if now >= next_sample:
                    await response.write(frame(metrics_view(master.plane, time.time())))
                    next_sample = now + HEARTBEAT_SECS
                try:
                    await asyncio.wait_for(changed.wait(), next_sample - time.monotonic())
                except TimeoutError:
                    continue
                await asyncio.sleep(max(COALESCE_SECS, RENDER_SHARE * render_secs))
                dirty = True
        except ConnectionResetError:
            pass  # the page went away
    return response


def _shown_jobs(plane: ControlPlane) -> list[JobRecord]:
    active = sorted(plane.active_jobs(), key=lambda j: j.submitted_at, reverse=True)
    ended = sorted(
        (j for j in plane.jobs.values() if j.terminal),
        key=lambda j: j.ended_at or j.submitted_at,
        reverse=True,
    )
    return active + ended[:RECENT_TERMINAL_JOBS]


def state_view(plane: ControlPlane, auth: bool) -> Json:
    """What the page shows but metrics: clusters, jobs (Mantis' job view), the token's need."""
    return {
        "type": "state",
        "auth": auth,
        "clusters": [
            {
                "name": name,
                "disabled": c.disabled,
                "latestVersion": c.definition.latest.version,
                "activeJobs": sum(1 for j in c.job_ids if not plane.jobs[j].terminal),
                "lastJobId": c.job_ids[-1] if c.job_ids else None,
            }
            for name, c in sorted(plane.clusters.items())
        ],
        "jobs": [render_job(j) for j in _shown_jobs(plane)],
    }


def metrics_view(plane: ControlPlane, now: float) -> Json:
    """Per active job and stage, the sums of its running workers' last heartbeat payloads."""
    jobs: dict[str, dict[str, Json]] = {}
    for job in plane.active_jobs():
        jobs[job.job_id] = {
            str(stage): _stage_sums(w.payloads for w in workers if w.running)
            for stage, workers in sorted(job.stages.items())
        }
    return {"type": "metrics", "at": ms(now), "jobs": jobs}


def _stage_sums(payloads: Iterable[Mapping[str, str]]) -> Json:
    rps = drops = cpu = cpu_limit = 0.0
    reporting = 0
    for p in payloads:
        report = parse_report(p)
        if report is None:
            continue
        reporting += 1
        rps += report.metrics.get("RPS", 0.0)
        drops += report.dropped or 0.0
        cpu += report.cpu_used or 0.0
        cpu_limit += report.cpu_limit or 0.0
    return {
        "workersReporting": reporting,
        "eventsPerSec": round(rps, 3),
        "drops": round(drops, 3),
        "cpuCores": round(cpu, 3),
        "cpuLimit": round(cpu_limit, 3),
    }
