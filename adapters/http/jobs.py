"""Job routes on Mantis' v1 paths (Mantis' v1 JobsRoute); postJobStatus is in worker_api.py.

Submitting answers 201 with the job view (or, for a unique tag already running, that job's);
killing needs `?user=&reason=` and answers 202; scaleStage and resubmitWorker answer 204. A
job id that is not `<cluster>-<n>` is a 400 naming `jobId`, an unknown one a 404. Terminal
jobs are served from what the plane still holds (the archive store comes later).
"""

from __future__ import annotations

import re

from aiohttp import web

from adapters.http.bodies import MantisJobDefinition, QuickSubmit, ResubmitWorker, ScaleStage
from adapters.http.compact import compact_job
from adapters.http.keys import MASTER
from adapters.http.parsing import (
    MAX_NAME,
    check_same,
    check_text,
    parse_job_request,
    read_body,
    required,
)
from adapters.http.queries import (
    PROJECTION_TARGETS,
    label_filter,
    page,
    page_of,
    projection,
    query_bool,
    query_opt_int,
    query_regex,
    sort_items,
    start_after,
    state_filter,
    worker_filter,
)
from adapters.http.rendering import render_job, render_worker
from adapters.http.responses import Json, json_response, no_content
from core.control import ControlPlane
from core.errors import InvalidRequest, NotFound
from core.job import JobRecord
from core.model import MAX_WORKERS_PER_STAGE, parse_job_id
from core.worker import Worker

JOBS = "/api/v1/jobs"
CLUSTER_JOBS = "/api/v1/jobClusters/{name}/jobs"
_JOB_ID = re.compile(r".+-[0-9]+")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(JOBS, list_jobs)
    router.add_post(JOBS, submit_job)
    router.add_post(JOBS + "/actions/quickSubmit", quick_submit)
    router.add_get(JOBS + "/{jobId}", get_job)
    router.add_delete(JOBS + "/{jobId}", kill_job)
    router.add_get(JOBS + "/{jobId}/archivedWorkers", archived_workers)
    router.add_post(JOBS + "/{jobId}/actions/scaleStage", scale_stage)
    router.add_post(JOBS + "/{jobId}/actions/resubmitWorker", resubmit_worker)
    router.add_get(CLUSTER_JOBS, list_jobs)
    router.add_post(CLUSTER_JOBS, submit_job)
    router.add_get(CLUSTER_JOBS + "/{jobId}", get_job)


def _job(request: web.Request) -> JobRecord:
    """The path's job: 400 if the id is malformed, 404 if unknown (or of another cluster)."""
    jid = request.match_info["jobId"]
    if not _JOB_ID.fullmatch(jid):  # core's parse_job_id takes any Unicode digit, int() does not
        raise InvalidRequest("jobId", f"{jid[:200]!r} is not of the form <cluster>-<number>")
    cluster, _ = parse_job_id(jid)
    name = request.match_info.get("name")
    if name is not None and cluster != name:
        raise NotFound("job", jid)
    master = request.app[MASTER]
    if jid in master.plane.jobs:
        return master.plane.job(jid)
    archived = master.archived_plane(jid)  # terminal jobs compacted out of the live log
    if archived is None:
        raise NotFound("job", jid)
    return archived.job(jid)


def _job_workers(plane: ControlPlane, job: JobRecord) -> list[Worker]:
    """Every worker the job ever had, by worker number."""
    prefix = f"{job.job_id}-worker-"
    found = [
        w for wid, w in plane.workers.items() if wid.startswith(prefix) and w.job_id == job.job_id
    ]
    return sorted(found, key=lambda w: w.number)


# ---------------------------------------------------------------------- listing


async def list_jobs(request: web.Request) -> web.Response:
    """Mantis' filters: jobState (over activeOnly, default true), matching (cluster name regex),
    labels + labels.op, stageNumber/workerIndex/workerNumber/workerState (which also narrow
    each job's workers), limit; newest first unless `ascending=true`, `startJobIdExclusive`
    resuming after a job of that order; `sortBy` (queries.sort_items), then pageSize/offset;
    `fields`/`fromObj` projecting each job (queries.projection); `compact=true`: each job's
    CompactJobInfo (compact.py)."""
    plane = request.app[MASTER].plane
    name = request.match_info.get("name")
    if name is not None:
        plane.cluster(name)
    terminal = state_filter(request, "jobState")
    if "jobState" not in request.query and query_bool(request, "activeOnly", True):
        terminal = False
    pattern = query_regex(request)
    labels = label_filter(request)
    workers = worker_filter(request)
    limit = query_opt_int(request, "limit")
    project = projection(request, PROJECTION_TARGETS)
    compact = query_bool(request, "compact", False)
    jobs = list(plane.jobs.values())
    if not query_bool(request, "ascending", False):
        jobs.reverse()
    jobs = jobs[start_after(request, [job.job_id for job in jobs]) :]
    out: list[tuple[JobRecord, list[Worker] | None]] = []  # rendered once paged
    for job in jobs:
        if limit is not None and len(out) >= limit:
            break
        if name is not None and job.cluster != name:
            continue
        if terminal is not None and job.terminal is not terminal:
            continue
        if pattern is not None and not pattern.search(job.cluster):
            continue
        if labels is not None and not labels(job):
            continue
        if workers is None:
            out.append((job, None))
            continue
        chosen = [w for w in job.current_workers() if workers(w)]
        if chosen:
            out.append((job, chosen))

    def render(item: tuple[JobRecord, list[Worker] | None]) -> Json:
        view = render_job(*item)
        return compact_job(view) if compact else view

    if request.query.get("sortBy"):
        ordered = sort_items(request, [render(item) for item in out], "jobMetadata")
        return json_response(page_of(request, ordered, project))
    return json_response(page_of(request, out, lambda item: project(render(item))))


async def get_job(request: web.Request) -> web.Response:
    """The job view; `fields`/`fromObj` as on the list, `compact=true` its CompactJobInfo."""
    project = projection(request, PROJECTION_TARGETS)
    view = render_job(_job(request))
    if query_bool(request, "compact", False):
        view = compact_job(view)
    return json_response(project(view))


async def archived_workers(request: web.Request) -> web.Response:
    """The job's terminal workers by worker number; `limit`, then pageSize/offset."""
    job = _job(request)
    limit = query_opt_int(request, "limit")
    master = request.app[MASTER]
    plane = master.plane if job.job_id in master.plane.jobs else master.archived_plane(job.job_id)
    assert plane is not None
    ended = [w for w in _job_workers(plane, job) if w.terminal]
    return json_response(page(request, [render_worker(w, job) for w in ended[:limit]]))


# ---------------------------------------------------------------------- commands


async def submit_job(request: web.Request) -> web.Response:
    """A MantisJobDefinition; `name` is the cluster (the path's, on the cluster route)."""
    body = await read_body(request, MantisJobDefinition)
    cluster = request.match_info.get("name")
    if cluster is None:
        cluster = required(body.name, "name")
    else:
        check_same(body.name, "name", cluster)
    user = required(body.user, "user")
    job_request = parse_job_request(body)
    master = request.app[MASTER]
    outcome = await master.call(
        lambda plane, now: plane.submit_job(cluster, job_request, user, now)
    )
    return json_response(render_job(master.plane.job(outcome.job_id)), status=201)


async def quick_submit(request: web.Request) -> web.Response:
    """`{name, user, jobDefinition?}` (Mantis' SubmitJobRequest): a job like the cluster's last
    one (running, else last, else the cluster's), with what `jobDefinition` sets instead."""
    body = await read_body(request, QuickSubmit)  # submitLatestJobCluster: the only kind
    name, user = body.name, body.user
    if body.job_sla is not None:
        raise InvalidRequest("jobSla", "goes in jobDefinition.jobSla")
    overrides = None
    if body.job_definition is not None:
        if body.job_definition.name not in (None, name):
            raise InvalidRequest("jobDefinition.name", f"must equal the body's name {name!r}")
        overrides = parse_job_request(body.job_definition, "jobDefinition.")
    master = request.app[MASTER]
    outcome = await master.call(lambda plane, now: plane.quick_submit(name, user, now, overrides))
    return json_response(render_job(master.plane.job(outcome.job_id)), status=201)


async def kill_job(request: web.Request) -> web.Response:
    user, reason = request.query.get("user"), request.query.get("reason")
    job = _job(request)
    if not user:
        raise InvalidRequest("user", "is required (?user=)")
    if not reason:
        raise InvalidRequest("reason", "is required (?reason=)")
    check_text(user, "user", MAX_NAME, name=True)
    check_text(reason, "reason")
    jid = job.job_id
    await request.app[MASTER].call(lambda plane, now: plane.kill_job(jid, user, reason, now))
    return no_content(202)


async def scale_stage(request: web.Request) -> web.Response:
    """`{JobId, StageNumber, NumWorkers, User, Reason}` (Mantis' capitalised names)."""
    job = _job(request)
    body = await read_body(request, ScaleStage)
    check_same(body.job_id, "JobId", job.job_id)
    stage, workers = body.stage_number, body.num_workers
    if not 1 <= workers <= MAX_WORKERS_PER_STAGE:
        raise InvalidRequest(
            "NumWorkers", f"must be in [1, {MAX_WORKERS_PER_STAGE}], got {workers}"
        )
    user, reason = body.user or "", body.reason or ""
    jid = job.job_id
    await request.app[MASTER].call(
        lambda plane, now: plane.scale_stage(jid, stage, workers, user, reason, now)
    )
    return no_content()


async def resubmit_worker(request: web.Request) -> web.Response:
    """`{workerNumber, user, reason}`: the worker is replaced by a new number at its index."""
    job = _job(request)
    body = await read_body(request, ResubmitWorker)
    number, user, reason = body.worker_number, body.user, body.reason or ""
    jid = job.job_id
    await request.app[MASTER].call(
        lambda plane, now: plane.resubmit_worker(jid, number, user, reason, now)
    )
    return no_content()
