"""Job cluster routes on Mantis' v1 paths (Mantis' v1 JobClustersRoute).

Create answers 201 with the cluster, a duplicate 409; PUT is a full update (a new version,
the rest overwritten) and answers 200 with the cluster; DELETE needs `?user=` and answers
204; the actions answer 204. A body's `name`, where Mantis has one, may be left out but must
equal the path's. Every body is parsed before the command runs, so a rejected call changes
nothing.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from adapters.http.bodies import (
    ClusterAction,
    NamedJobDefinition,
    UpdateArtifact,
    UpdateLabels,
    UpdateSchedulingInfo,
    UpdateSla,
)
from adapters.http.keys import MASTER
from adapters.http.parsing import (
    MAX_NAME,
    artifact_of,
    check_same,
    check_text,
    parse_cluster_definition,
    parse_named,
    parse_scheduling_info,
    read_body,
    required,
    within,
)
from adapters.http.queries import page, projection, query_regex, sort_items
from adapters.http.rendering import render_cluster
from adapters.http.responses import json_response, no_content
from core.control import ControlPlane, Outcome
from core.errors import InvalidRequest
from core.model import ClusterSla, Label

BASE = "/api/v1/jobClusters"
Action = TypeVar("Action", bound=ClusterAction)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(BASE, list_clusters)
    router.add_post(BASE, create_cluster)
    router.add_get(BASE + "/{name}", get_cluster)
    router.add_put(BASE + "/{name}", update_cluster)
    router.add_delete(BASE + "/{name}", delete_cluster)
    router.add_post(BASE + "/{name}/actions/updateArtifact", update_artifact)
    router.add_post(BASE + "/{name}/actions/updateSchedulingInfo", update_scheduling_info)
    router.add_post(BASE + "/{name}/actions/updateSla", update_sla)
    router.add_post(BASE + "/{name}/actions/updateLabel", update_label)
    router.add_post(BASE + "/{name}/actions/enableCluster", enable_cluster)
    router.add_post(BASE + "/{name}/actions/disableCluster", disable_cluster)


async def list_clusters(request: web.Request) -> web.Response:
    """`matching` (a regex searched in the name), then `pageSize`/`offset`; sorted by name, or
    by `sortBy`/`ascending`; `fields` projects each cluster (queries.py)."""
    plane = request.app[MASTER].plane
    pattern = query_regex(request)
    project = projection(request)
    names = sorted(n for n in plane.clusters if pattern is None or pattern.search(n))
    clusters = sort_items(request, [render_cluster(plane.clusters[n]) for n in names])
    return json_response(page(request, [project(c) for c in clusters]))


async def create_cluster(request: web.Request) -> web.Response:
    body = await read_body(request, NamedJobDefinition)
    master = request.app[MASTER]

    def command(plane: ControlPlane, now: float) -> Outcome:
        definition, _ = parse_cluster_definition(body, now)
        with within("jobDefinition."):
            return plane.create_cluster(definition, now)

    await master.call(command)
    name = required(body.job_definition.name, "jobDefinition.name")
    return json_response(render_cluster(master.plane.cluster(name)), status=201)


async def get_cluster(request: web.Request) -> web.Response:
    project = projection(request)
    cluster = request.app[MASTER].plane.cluster(request.match_info["name"])
    return json_response(project(render_cluster(cluster)))


async def update_cluster(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    master = request.app[MASTER]
    master.plane.cluster(name)  # 404 before any 400 about the body
    body = await read_body(request, NamedJobDefinition)

    def command(plane: ControlPlane, now: float) -> Outcome:
        definition, user = parse_cluster_definition(body, now)
        if definition.name != name:
            raise InvalidRequest("jobDefinition.name", f"must equal {name!r} from the path")
        with within("jobDefinition."):
            return plane.update_cluster(definition, user, now)

    await master.call(command)
    return json_response(render_cluster(master.plane.cluster(name)))


async def delete_cluster(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    user = request.query.get("user")
    request.app[MASTER].plane.cluster(name)
    if not user:
        raise InvalidRequest("user", "is required (?user=)")
    check_text(user, "user", MAX_NAME, name=True)
    await request.app[MASTER].call(lambda plane, now: plane.delete_cluster(name, user, now))
    return no_content()


async def _action_body(request: web.Request, kind: type[Action]) -> tuple[str, Action]:
    """(cluster name, body) of an action: the cluster exists (404 first), the body's `name`
    is the path's."""
    name = request.match_info["name"]
    request.app[MASTER].plane.cluster(name)
    body = await read_body(request, kind)
    check_same(body.name, "name", name)
    return name, body


async def update_artifact(request: web.Request) -> web.Response:
    """`{name, url, artifactName?, version, skipsubmit, user}`; submits a job unless skipsubmit."""
    name, body = await _action_body(request, UpdateArtifact)
    user, url = body.user, body.url or ""
    artifact = artifact_of(url, body.artifact_name, "")
    if not artifact:
        raise InvalidRequest("url", "an artifact URL (or artifactName) is required")
    version = body.version
    skip = bool(body.skipsubmit)
    await request.app[MASTER].call(
        lambda plane, now: plane.update_artifact(
            name, artifact, version, user, now, job_jar_url=url, skip_submit=skip
        )
    )
    return no_content()


async def update_scheduling_info(request: web.Request) -> web.Response:
    """`{name, schedulingInfo, version, user}`: a new version with new scheduling info."""
    name, body = await _action_body(request, UpdateSchedulingInfo)
    user, version = body.user, body.version
    info = parse_scheduling_info(body.scheduling_info, "schedulingInfo")
    await request.app[MASTER].call(
        lambda plane, now: plane.update_scheduling_info(name, info, version, user, now)
    )
    return no_content()


async def update_sla(request: web.Request) -> web.Response:
    """`{name, user, min, max, cronspec, cronpolicy, forceenable}` (Mantis' lower-case names)."""
    name, body = await _action_body(request, UpdateSla)
    user = body.user
    renamed = {"slaMin": "min", "slaMax": "max", "cronSpec": "cronspec"}
    try:
        sla = ClusterSla(body.min or 0, body.max or 0, body.cronspec or "", body.cronpolicy)
    except InvalidRequest as e:
        field = renamed.get(e.field, e.field)
        raise InvalidRequest(field, e.message.removeprefix(f"{e.field}: ")) from None
    force = bool(body.forceenable)
    await request.app[MASTER].call(
        lambda plane, now: plane.update_sla(name, sla, user, now, force_enable=force)
    )
    return no_content()


async def update_label(request: web.Request) -> web.Response:
    """`{name, labels: [{name, value}], user}`: the cluster's labels, replaced."""
    name, body = await _action_body(request, UpdateLabels)
    user = body.user
    labels = parse_named(Label, body.labels, "labels")
    await request.app[MASTER].call(lambda plane, now: plane.update_labels(name, labels, user, now))
    return no_content()


async def enable_cluster(request: web.Request) -> web.Response:
    name, body = await _action_body(request, ClusterAction)
    user = body.user
    await request.app[MASTER].call(lambda plane, now: plane.enable_cluster(name, user, now))
    return no_content()


async def disable_cluster(request: web.Request) -> web.Response:
    """Disabling kills the cluster's active jobs and refuses submissions until enabled."""
    name, body = await _action_body(request, ClusterAction)
    user = body.user
    await request.app[MASTER].call(lambda plane, now: plane.disable_cluster(name, user, now))
    return no_content()
