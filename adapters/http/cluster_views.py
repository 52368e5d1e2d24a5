"""A job cluster's read-only views from Mantis' v1 JobClustersRoute: the scheduling info of its
latest job, and its health.

`GET /api/v1/jobClusters/{name}/latestJobDiscoveryInfo`: the JobSchedulingInfo (as the
discovery stream sends it) of the cluster's newest job that has started and not ended
(JobClusterActor.onGetLatestJobDiscoveryInfo follows the last started job id); 404 when there
is none. `GET /api/v1/jobClusters/{name}/healthcheck`: JobClusterActor.onHealthCheck: the
cluster's active jobs (or those of `job-ids`, a comma-separated list; ids of other clusters
or ended jobs are left out) are healthy when every current worker is Started; otherwise
`isHealthy: false` with the unready workers (`failureReason.type` `unreadyWorkers`). Both
answers are 200, as Mantis'; an unknown cluster is a 404.
"""

from __future__ import annotations

from aiohttp import web

from adapters.http.keys import MASTER
from adapters.http.rendering import render_job_scheduling_info
from adapters.http.responses import Json, json_response
from core.errors import NotFound
from core.job import JobState
from core.worker import WorkerState

BASE = "/api/v1/jobClusters/{name}"
MAX_JOB_IDS = 1000


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(BASE + "/latestJobDiscoveryInfo", latest_job_discovery_info)
    router.add_get(BASE + "/healthcheck", healthcheck)


async def latest_job_discovery_info(request: web.Request) -> web.Response:
    plane = request.app[MASTER].plane
    cluster = plane.cluster(request.match_info["name"])
    started = (
        jid for jid in reversed(cluster.job_ids) if plane.jobs[jid].state is JobState.Launched
    )
    jid = next(started, None)
    if jid is None:
        raise NotFound("started job of job cluster", cluster.definition.name)
    return json_response(render_job_scheduling_info(plane.scheduling_info(jid)))


async def healthcheck(request: web.Request) -> web.Response:
    plane = request.app[MASTER].plane
    cluster = plane.cluster(request.match_info["name"])
    raw = request.query.get("job-ids", "")
    wanted = {j.strip() for j in raw.split(",")[:MAX_JOB_IDS] if j.strip()}
    jobs = [
        plane.jobs[jid]
        for jid in cluster.job_ids
        if not plane.jobs[jid].terminal and (not wanted or jid in wanted)
    ]
    unready: list[Json] = [
        {
            "jobId": w.job_id,
            "workerIndex": w.index,
            "workerNumber": w.number,
            "state": w.state.value,
        }
        for job in jobs
        for w in job.current_workers()
        if w.state is not WorkerState.Started
    ]
    if not unready:
        body: Json = {"responseCode": "SUCCESS", "message": "OK", "isHealthy": True}
        return json_response(body | {"failureReason": None})
    reason = {"type": "unreadyWorkers", "workers": unready}
    return json_response(
        {
            "responseCode": "SUCCESS",
            "message": "unready workers",
            "isHealthy": False,
            "failureReason": reason,
        }
    )
