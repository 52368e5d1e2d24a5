"""The master's REST API on Mantis' v1 paths: job clusters, jobs, admin, over loopback HTTP.

Every rejected call is checked to change nothing: no event appended, the plane as before.
Artifacts and auth are in test_http_rest_api_artifacts.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.http_helpers import (
    HOST,
    JSON_TYPE,
    T0,
    ApiClient,
    cluster_body,
    create,
    expect_error,
    new_master,
    stage,
    start_all,
    submit,
)

# ------------------------------------------------------------------------ job clusters


async def test_create_then_get_shows_mantis_cluster_view(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    created = await create(client)
    assert created["name"] == "demo"
    assert created["latestVersion"] == "1"
    assert created["disabled"] is False and created["lastJobCount"] == 0
    jar = created["jars"][0]
    assert jar["url"] == "http://artifacts.example/demo-1.zip"
    assert jar["artifactName"] == "demo-1.zip"
    assert jar["uploadedAt"] == T0 * 1000
    stages = jar["schedulingInfo"]["stages"]
    assert sorted(stages) == ["1", "2"]  # stage 0 (the job master) is Mantis' own
    assert stages["1"]["numberOfInstances"] == 2
    assert stages["2"]["scalable"] is True
    assert stages["1"]["machineDefinition"] == {
        "cpuCores": 1.0,
        "memoryMB": 512.0,
        "networkMbps": 128.0,
        "diskMB": 100.0,
        "numPorts": 1,
    }
    assert created["parameters"] == [{"name": "useRandom", "value": "false"}]
    assert created["sla"] == {"min": 0, "max": 0, "cronSpec": None, "cronPolicy": None}
    assert created["owner"]["contactEmail"] == "a@x"
    assert len(master.store.events) == 1
    resp = await client.get("/api/v1/jobClusters/demo")
    assert resp.status == 200 and await resp.json() == created


async def test_scaling_policy_round_trips(api_client: ApiClient) -> None:
    master = new_master()
    policy = {
        "min": 1,
        "max": 5,
        "increment": 2,
        "decrement": 1,
        "coolDownSecs": 60,
        "strategies": {
            "CPU": {
                "reason": "CPU",
                "scaleDownBelowPct": 20,
                "scaleUpAbovePct": 70,
                "rollingCount": {"count": 3, "of": 4},
            }
        },
    }
    info = {"stages": {"1": {**stage(2, scalable=True), "scalingPolicy": policy}}}
    client = await api_client(master)
    view = await create(client, schedulingInfo=info)
    got = view["jars"][0]["schedulingInfo"]["stages"]["1"]["scalingPolicy"]
    assert got["enabled"] is True and (got["stage"], got["min"], got["max"]) == (1, 1, 5)
    assert got["strategies"]["CPU"]["rollingCount"] == {"count": 3, "of": 4}
    assert got["strategies"]["CPU"]["scaleUpAbovePct"] == 70
    bad = {"stages": {"1": {**stage(), "scalingPolicy": {**policy, "min": -1}}}}
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobClusters",
        400,
        "jobDefinition.schedulingInfo.stages.1.scalingPolicy.min",
        json=cluster_body("other", schedulingInfo=bad),
    )
    bad = {
        "stages": {
            "1": {
                **stage(),
                "scalingPolicy": {"strategies": {"CPU": {"rollingCount": {"count": 5, "of": 4}}}},
            }
        }
    }
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobClusters",
        400,
        "jobDefinition.schedulingInfo.stages.1.scalingPolicy.strategies.CPU.rollingCount",
        json=cluster_body("other", schedulingInfo=bad),
    )


async def test_list_clusters_matches_a_regex_and_pages(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    for name in ("beta", "alpha2", "alpha1"):
        await create(client, name)

    def names(body: dict[str, Any]) -> list[str]:
        return [c["name"] for c in body["list"]]

    every = await (await client.get("/api/v1/jobClusters")).json()
    assert names(every) == ["alpha1", "alpha2", "beta"]
    assert every["prev"] is None and every["next"] is None and every["total"] == 3
    alphas = await (await client.get("/api/v1/jobClusters?matching=^alpha")).json()
    assert names(alphas) == ["alpha1", "alpha2"]
    second = await (await client.get("/api/v1/jobClusters?pageSize=1&offset=1")).json()
    assert names(second) == ["alpha2"]
    assert second["prev"] == "/api/v1/jobClusters?pageSize=1&offset=0"
    assert second["next"] == "/api/v1/jobClusters?pageSize=1&offset=2"
    last = await (await client.get(second["next"])).json()
    assert names(last) == ["beta"] and last["next"] is None
    for query, field in (
        ("pageSize=-1", "pageSize"),
        ("offset=x", "offset"),
        ("matching=(", "matching"),
    ):
        await expect_error(client, master, "GET", f"/api/v1/jobClusters?{query}", 400, field)


BAD_CLUSTERS: list[tuple[str, Any, str]] = [
    ("not an object", [], "body"),
    ("no jobDefinition", {"owner": {}}, "jobDefinition"),
    ("no name", cluster_body(name=None), "jobDefinition.name"),  # type: ignore[arg-type]
    ("bad name", cluster_body("9lives"), "jobDefinition.name"),
    ("no user", cluster_body(user=None), "jobDefinition.user"),
    ("no artifact", cluster_body(jobJarFileLocation=None), "jobDefinition.jobJarFileLocation"),
    ("no scheduling info", cluster_body(schedulingInfo=None), "jobDefinition.schedulingInfo"),
    (
        "cpu not a number",
        cluster_body(schedulingInfo={"stages": {"1": stage(cpuCores="x")}}),
        "jobDefinition.schedulingInfo.stages.1.machineDefinition.cpuCores",
    ),
    (
        "too many cores",
        cluster_body(schedulingInfo={"stages": {"1": stage(cpuCores=64)}}),
        "jobDefinition.schedulingInfo.stages.1.machineDefinition.cpuCores",
    ),
    (
        "no instances",
        cluster_body(schedulingInfo={"stages": {"1": stage(0)}}),
        "jobDefinition.schedulingInfo.stages.1.numberOfInstances",
    ),
    (
        "a stage not numbered",
        cluster_body(schedulingInfo={"stages": {"\u00b9": stage()}}),
        "jobDefinition.schedulingInfo.stages",
    ),
    (
        "a gap in stages",
        cluster_body(schedulingInfo={"stages": {"1": stage(), "3": stage()}}),
        "jobDefinition.schedulingInfo.stages",
    ),
    (
        "unknown constraint",
        cluster_body(schedulingInfo={"stages": {"1": {**stage(), "hardConstraints": ["Nowhere"]}}}),
        "jobDefinition.schedulingInfo.stages.1.hardConstraints[0]",
    ),
    ("sla min too high", cluster_body(slaMin=6, slaMax=10), "jobDefinition.slaMin"),
    ("bad cron", cluster_body(cronSpec="every tuesday"), "jobDefinition.cronSpec"),
    ("bad cron policy", cluster_body(cronPolicy="KEEP_ALL"), "jobDefinition.cronPolicy"),
    ("label without name", cluster_body(labels=[{"value": "x"}]), "jobDefinition.labels[0].name"),
    (
        "duplicate parameters",
        cluster_body(parameters=[{"name": "a", "value": 1}] * 2),
        "jobDefinition.parameters",
    ),
    (
        "bad duration type",
        cluster_body(jobSla={"durationType": "Forever"}),
        "jobDefinition.jobSla.durationType",
    ),
    (
        "huge integer",
        cluster_body(schedulingInfo={"stages": {"1": stage(2**64)}}),
        "jobDefinition.schedulingInfo.stages.1.numberOfInstances",
    ),
    (
        "boolean as number",
        cluster_body(schedulingInfo={"stages": {"1": stage(True)}}),
        "jobDefinition.schedulingInfo.stages.1.numberOfInstances",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_CLUSTERS, ids=[c[0] for c in BAD_CLUSTERS])
async def test_bad_cluster_definitions_are_400_naming_the_field(
    case: str, body: Any, field: str, api_client: ApiClient
) -> None:
    master = new_master()
    client = await api_client(master)
    await expect_error(client, master, "POST", "/api/v1/jobClusters", 400, field, json=body)


async def test_bad_json_duplicates_and_unknown_clusters(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobClusters",
        400,
        "body",
        data=b"{not json",
        headers=JSON_TYPE,
    )
    await create(client)
    body = await expect_error(
        client, master, "POST", "/api/v1/jobClusters", 409, json=cluster_body(version="2")
    )
    assert "already exists" in body["error"]
    for method, path in (
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", "?user=a"),
        ("POST", "/actions/enableCluster"),
        ("GET", "/jobs"),
    ):
        kwargs: dict[str, Any] = {"json": {**cluster_body("nope"), "user": "a"}}
        if method == "GET":
            kwargs = {}
        await expect_error(client, master, method, f"/api/v1/jobClusters/nope{path}", 404, **kwargs)
    await expect_error(client, master, "PATCH", "/api/v1/jobClusters/demo", 405)


async def test_put_adds_a_version_and_overwrites_the_rest(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    body = cluster_body(version="2", labels=[{"name": "team", "value": "other"}])
    resp = await client.put("/api/v1/jobClusters/demo", json=body)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert [j["version"] for j in view["jars"]] == ["1", "2"]
    assert view["latestVersion"] == "2"
    assert view["labels"] == [{"name": "team", "value": "other"}]
    await expect_error(
        client,
        master,
        "PUT",
        "/api/v1/jobClusters/demo",
        400,
        "jobDefinition.version",
        json=cluster_body(version="2"),
    )
    await expect_error(
        client,
        master,
        "PUT",
        "/api/v1/jobClusters/demo",
        400,
        "jobDefinition.name",
        json=cluster_body("other", version="3"),
    )


async def test_cluster_actions_answer_204_and_take_effect(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    base = "/api/v1/jobClusters/demo/actions"
    resp = await client.post(
        f"{base}/updateArtifact",
        json={
            "name": "demo",
            "url": "http://a.example/demo-2.zip",
            "version": "2",
            "skipsubmit": True,
            "user": "alice",
        },
    )
    assert resp.status == 204
    assert master.plane.cluster("demo").definition.latest.artifact_name == "demo-2.zip"
    assert master.plane.jobs == {}
    resp = await client.post(
        f"{base}/updateArtifact",
        json={"url": "http://a.example/demo-3.zip", "version": "3", "user": "alice"},
    )
    assert resp.status == 204 and list(master.plane.jobs) == ["demo-1"]
    assert master.plane.job("demo-1").definition.artifact_name == "demo-3.zip"

    info = {"stages": {"1": stage(3)}}
    resp = await client.post(
        f"{base}/updateSchedulingInfo",
        json={"schedulingInfo": info, "version": "4", "user": "a"},
    )
    assert resp.status == 204
    latest = master.plane.cluster("demo").definition.latest
    assert latest.version == "4" and latest.scheduling_info.stages[0].number_of_instances == 3

    resp = await client.post(f"{base}/updateSla", json={"user": "a", "min": 0, "max": 2})
    assert resp.status == 204
    view = await (await client.get("/api/v1/jobClusters/demo")).json()
    assert view["sla"] == {"min": 0, "max": 2, "cronSpec": None, "cronPolicy": None}
    resp = await client.post(f"{base}/updateSla", json={"user": "a", "cronspec": "0 0 12 * * ?"})
    view = await (await client.get("/api/v1/jobClusters/demo")).json()
    assert resp.status == 204 and view["cronActive"] is True
    assert view["sla"]["cronPolicy"] == "KEEP_EXISTING"

    labels = [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]
    resp = await client.post(f"{base}/updateLabel", json={"labels": labels, "user": "a"})
    view = await (await client.get("/api/v1/jobClusters/demo")).json()
    assert resp.status == 204 and view["labels"] == labels

    resp = await client.post(f"{base}/disableCluster", json={"name": "demo", "user": "a"})
    assert resp.status == 204 and master.plane.cluster("demo").disabled
    assert master.plane.job("demo-1").terminal  # disabling kills the active jobs
    await expect_error(
        client, master, "POST", "/api/v1/jobClusters/demo/jobs", 409, json={"user": "bob"}
    )
    resp = await client.post(f"{base}/enableCluster", json={"user": "a"})
    assert resp.status == 204 and not master.plane.cluster("demo").disabled


BAD_ACTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("updateArtifact", {"url": "http://x/y.zip", "user": "a"}, "version"),
    ("updateArtifact", {"version": "9", "user": "a"}, "url"),
    ("updateArtifact", {"url": "http://x/y.zip", "version": "1", "user": "a"}, "version"),
    (
        "updateArtifact",
        {"url": "http://x/y.zip", "version": "9", "user": "a", "skipsubmit": "maybe"},
        "skipsubmit",
    ),
    ("updateSchedulingInfo", {"version": "9", "user": "a"}, "schedulingInfo"),
    (
        "updateSchedulingInfo",
        {"schedulingInfo": {"stages": {}}, "version": "9", "user": "a"},
        "schedulingInfo.stages",
    ),
    ("updateSla", {"user": "a", "min": 3, "max": 1}, "max"),
    ("updateSla", {"user": "a", "min": "x"}, "min"),
    ("updateSla", {"user": "a", "cronspec": "nope"}, "cronspec"),
    ("updateSla", {"user": "a", "cronspec": "0 0 12 * * ?", "cronpolicy": "KEEP"}, "cronpolicy"),
    ("updateLabel", {"user": "a"}, "labels"),
    ("updateLabel", {"user": "a", "labels": [{"name": 3, "value": "x"}]}, "labels[0].name"),
    ("enableCluster", {"name": "demo"}, "user"),
    ("disableCluster", {"name": "other", "user": "a"}, "name"),
]


@pytest.mark.parametrize(
    ("action", "body", "field"), BAD_ACTIONS, ids=[f"{a}-{f}" for a, _, f in BAD_ACTIONS]
)
async def test_bad_cluster_actions_are_400_naming_the_field(
    action: str, body: dict[str, Any], field: str, api_client: ApiClient
) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    await expect_error(
        client, master, "POST", f"/api/v1/jobClusters/demo/actions/{action}", 400, field, json=body
    )


async def test_delete_cluster_needs_a_user_and_no_active_jobs(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    await expect_error(client, master, "DELETE", "/api/v1/jobClusters/demo", 400, "user")
    await expect_error(client, master, "DELETE", "/api/v1/jobClusters/demo?user=a", 409)
    resp = await client.delete(f"/api/v1/jobs/{jid}?user=a&reason=done")
    assert resp.status == 202
    resp = await client.delete("/api/v1/jobClusters/demo?user=a")
    assert resp.status == 204
    assert (await client.get("/api/v1/jobClusters/demo")).status == 404


# ------------------------------------------------------------------------ jobs


async def test_submit_answers_201_with_mantis_job_view(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    resp = await client.post(
        "/api/v1/jobClusters/demo/jobs",
        json={
            "name": "demo",
            "user": "bob",
            "subscriptionTimeoutSecs": "30",
            "parameters": [{"name": "useRandom", "value": "true"}],
            "jobSla": {"runtimeLimitSecs": "0", "durationType": "Transient"},
        },
    )
    assert resp.status == 201, await resp.text()
    view = await resp.json()
    meta = view["jobMetadata"]
    assert meta["jobId"] == "demo-1" and meta["name"] == "demo" and meta["user"] == "bob"
    assert meta["state"] == "Accepted" and meta["submittedAt"] == T0 * 1000
    assert meta["startedAt"] == -1 and meta["numStages"] == 2
    assert meta["sla"]["durationType"] == "Transient"
    assert meta["subscriptionTimeoutSecs"] == 30
    assert {"name": "useRandom", "value": "true"} in meta["parameters"]
    assert {"name": "_mantis.submitter", "value": "bob"} in meta["labels"]
    assert [s["numWorkers"] for s in view["stageMetadataList"]] == [2, 1]
    workers = view["workerMetadataList"]
    assert [(w["stageNum"], w["workerIndex"], w["workerNumber"]) for w in workers] == [
        (1, 0, 1),
        (1, 1, 2),
        (2, 0, 3),
    ]
    assert workers[0]["state"] == "Accepted" and workers[0]["launchedAt"] == -1
    assert workers[0]["numberOfPorts"] == 5 and workers[0]["slave"] is None
    assert view["version"] == "1"

    resp = await client.post("/api/v1/jobs", json={"name": "demo", "user": "carol"})
    assert resp.status == 201
    assert (await resp.json())["jobMetadata"]["jobId"] == "demo-2"
    for path in ("/api/v1/jobs/demo-1", "/api/v1/jobClusters/demo/jobs/demo-1"):
        resp = await client.get(path)
        assert resp.status == 200 and (await resp.json())["jobMetadata"]["jobId"] == "demo-1"


async def test_job_errors_name_the_field_and_change_nothing(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    await create(client, "other")
    jobs = "/api/v1/jobClusters/demo/jobs"
    await expect_error(client, master, "POST", jobs, 400, "user", json={})
    await expect_error(
        client, master, "POST", jobs, 400, "name", json={"name": "other", "user": "b"}
    )
    await expect_error(
        client, master, "POST", jobs, 400, "version", json={"user": "b", "version": "7"}
    )
    await expect_error(
        client,
        master,
        "POST",
        jobs,
        400,
        "subscriptionTimeoutSecs",
        json={"user": "b", "subscriptionTimeoutSecs": -1},
    )
    await expect_error(
        client,
        master,
        "POST",
        jobs,
        400,
        "schedulingInfo.stages.1.machineDefinition.memoryMB",
        json={"user": "b", "schedulingInfo": {"stages": {"1": stage(memoryMB=-1)}}},
    )
    await expect_error(client, master, "POST", "/api/v1/jobs", 400, "name", json={"user": "b"})
    await expect_error(
        client, master, "POST", "/api/v1/jobs", 404, json={"name": "nope", "user": "b"}
    )
    await submit(client)
    await expect_error(client, master, "GET", "/api/v1/jobs/demo-9", 404)
    await expect_error(client, master, "GET", "/api/v1/jobs/demo", 400, "jobId")
    await expect_error(client, master, "GET", "/api/v1/jobs/demo-%C2%B2", 400, "jobId")
    await expect_error(client, master, "GET", "/api/v1/jobClusters/other/jobs/demo-1", 404)


async def test_kill_needs_user_and_reason_and_answers_202(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    await expect_error(client, master, "DELETE", f"/api/v1/jobs/{jid}?reason=x", 400, "user")
    await expect_error(client, master, "DELETE", f"/api/v1/jobs/{jid}?user=x", 400, "reason")
    await expect_error(client, master, "DELETE", "/api/v1/jobs/demo-7?user=a&reason=b", 404)
    resp = await client.delete(f"/api/v1/jobs/{jid}?user=alice&reason=enough")
    assert resp.status == 202
    job = master.plane.job(jid)
    assert job.state.value == "Completed" and job.message == "enough"
    await expect_error(client, master, "DELETE", f"/api/v1/jobs/{jid}?user=a&reason=b", 409)
    view = await (await client.get(f"/api/v1/jobs/{jid}")).json()
    assert view["jobMetadata"]["state"] == "Completed"
    assert view["jobMetadata"]["reason"] == "Killed"


async def test_list_jobs_with_mantis_filters(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    await create(client, "other")
    killed = await submit(client)
    active = await submit(client)
    labelled = await submit(client, "other", labels=[{"name": "env", "value": "prod"}])
    await client.delete(f"/api/v1/jobs/{killed}?user=a&reason=b")

    async def ids(query: str = "", path: str = "/api/v1/jobs") -> list[str]:
        resp = await client.get(f"{path}?{query}")
        assert resp.status == 200, await resp.text()
        return [j["jobMetadata"]["jobId"] for j in (await resp.json())["list"]]

    assert await ids() == [labelled, active]  # active only, newest first
    assert await ids("ascending=true") == [active, labelled]
    assert await ids("activeOnly=false") == [labelled, active, killed]
    assert await ids("jobState=Terminal") == [killed]
    assert await ids("jobState=Active&activeOnly=false") == [labelled, active]
    assert await ids("matching=^dem") == [active]
    assert await ids("activeOnly=false", "/api/v1/jobClusters/demo/jobs") == [
        active,
        killed,
    ]
    assert await ids("labels=env=prod") == [labelled]
    assert await ids("labels=env") == [labelled]
    assert await ids("labels=env=dev") == []
    assert await ids("labels=env=prod,team=streams&labels.op=or") == [labelled, active]
    assert await ids("labels=env=prod,team=streams&labels.op=and") == [labelled]
    assert await ids("limit=1") == [labelled]
    assert await ids("pageSize=1&offset=1") == [active]

    resp = await client.get("/api/v1/jobs?stageNumber=1&workerIndex=1&activeOnly=false")
    jobs = (await resp.json())["list"]
    assert [j["jobMetadata"]["jobId"] for j in jobs] == [labelled, active, killed]
    assert {(w["stageNum"], w["workerIndex"]) for j in jobs for w in j["workerMetadataList"]} == {
        (1, 1)
    }
    assert await ids("workerState=Terminal&activeOnly=false") == [killed]
    assert await ids("workerNumber=3&stageNumber=1") == []

    for query, field in (
        ("jobState=Running", "jobState"),
        ("activeOnly=maybe", "activeOnly"),
        ("labels.op=xor", "labels.op"),
        ("labels==x", "labels"),
        ("workerIndex=-1", "workerIndex"),
        ("limit=z", "limit"),
        ("matching=[", "matching"),
        ("pageSize=1.5", "pageSize"),
        ("workerState=Gone", "workerState"),
    ):
        await expect_error(client, master, "GET", f"/api/v1/jobs?{query}", 400, field)


async def test_quick_submit_inherits_from_the_last_job(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    await submit(client, subscriptionTimeoutSecs=45)
    resp = await client.post(
        "/api/v1/jobs/actions/quickSubmit", json={"name": "demo", "user": "dave"}
    )
    assert resp.status == 201, await resp.text()
    meta = (await resp.json())["jobMetadata"]
    assert meta["jobId"] == "demo-2" and meta["user"] == "dave"
    assert meta["subscriptionTimeoutSecs"] == 45
    quick = "/api/v1/jobs/actions/quickSubmit"
    await expect_error(client, master, "POST", quick, 400, "user", json={"name": "demo"})
    await expect_error(
        client,
        master,
        "POST",
        quick,
        400,
        "jobSla",
        json={"name": "demo", "user": "d", "jobSla": {}},
    )
    await expect_error(client, master, "POST", quick, 404, json={"name": "x", "user": "d"})


async def test_scale_stage_and_resubmit_worker(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    scale = f"/api/v1/jobs/{jid}/actions/scaleStage"
    await expect_error(
        client, master, "POST", scale, 409, json={"StageNumber": 2, "NumWorkers": 3}
    )  # not Launched yet
    start_all(master, jid)
    resp = await client.post(
        scale,
        json={"JobId": jid, "StageNumber": 2, "NumWorkers": 3, "User": "ops", "Reason": "load"},
    )
    assert resp.status == 204, await resp.text()
    view = await (await client.get(f"/api/v1/jobs/{jid}")).json()
    assert [s["numWorkers"] for s in view["stageMetadataList"]] == [2, 3]
    for body, field in (
        ({"StageNumber": 2}, "NumWorkers"),
        ({"StageNumber": 2, "NumWorkers": 1501}, "NumWorkers"),
        ({"StageNumber": 1, "NumWorkers": 3}, "StageNumber"),
        ({"StageNumber": 9, "NumWorkers": 3}, "stageNumber"),
        ({"JobId": "demo-9", "StageNumber": 2, "NumWorkers": 1}, "JobId"),
    ):
        await expect_error(client, master, "POST", scale, 400, field, json=body)

    resubmit = f"/api/v1/jobs/{jid}/actions/resubmitWorker"
    resp = await client.post(resubmit, json={"workerNumber": 1, "user": "ops", "reason": "stuck"})
    assert resp.status == 204, await resp.text()
    archived = await (await client.get(f"/api/v1/jobs/{jid}/archivedWorkers")).json()
    assert [(w["workerNumber"], w["state"], w["reason"]) for w in archived["list"]] == [
        (1, "Failed", "Relaunched")
    ]
    view = await (await client.get(f"/api/v1/jobs/{jid}")).json()
    replacement = view["workerMetadataList"][0]
    assert (replacement["workerIndex"], replacement["resubmitOf"]) == (0, 1)
    assert replacement["totalResubmitCount"] == 1
    await expect_error(
        client,
        master,
        "POST",
        resubmit,
        400,
        "workerNumber",
        json={"workerNumber": 1, "user": "ops"},
    )
    await expect_error(client, master, "POST", resubmit, 400, "user", json={"workerNumber": 2})
    await expect_error(
        client,
        master,
        "POST",
        resubmit,
        400,
        "workerNumber",
        json={"workerNumber": "two", "user": "ops"},
    )
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobs/demo-8/actions/resubmitWorker",
        404,
        json={"workerNumber": 2, "user": "ops"},
    )
    await expect_error(client, master, "GET", "/api/v1/jobs/x/archivedWorkers", 400, "jobId")


# ------------------------------------------------------------------------ admin


async def test_master_info_and_healthcheck(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    info = await (await client.get("/api/v1/masterInfo")).json()
    assert info["hostIP"] == HOST and info["apiPort"] == client.port
    assert info["createTime"] == T0 * 1000
    assert info["fullApiStatusUri"] == (
        f"http://{HOST}:{client.port}/api/v1/jobs/actions/postJobStatus"
    )
    resp = await client.get("/api/v1/healthcheck")
    assert resp.status == 200
    assert await resp.json() == {"isHealthy": True, "failureReason": None}
    master.watchers.close()
    assert (await client.get("/api/v1/healthcheck")).status == 503
    assert "instanceId" not in info


async def test_master_info_echoes_the_instance_id_its_supervisor_gave(
    api_client: ApiClient,
) -> None:
    client = await api_client(new_master(), instance_id="up-7f3a")
    info = await (await client.get("/api/v1/masterInfo")).json()
    assert info["instanceId"] == "up-7f3a"
