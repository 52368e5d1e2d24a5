"""The rest of Mantis' v1 REST API, over loopback HTTP, with Mantis' status codes: projection
(`fields`, `fromObj`), sorting (`sortBy`, `ascending`), `startJobIdExclusive`,
latestJobDiscoveryInfo, the cluster healthcheck, masterConfigs, updateMigrationStrategy,
quickSubmit with a jobDefinition, and the agents' disable / drain / enable. Every refused
call is checked to change nothing."""

from __future__ import annotations

import orjson

from core.migration import AgentMode
from core.scheduling import Offer
from tests.integration.http_helpers import (
    ApiClient,
    Clock,
    create,
    expect_error,
    new_master,
    start_all,
    submit,
)

PERCENT = '{"percentToMove":50,"intervalMs":1000}'


async def test_fields_and_from_obj_project_as_mantis(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    resp = await client.get("/api/v1/jobs", params={"fields": "jobMetadata,version"})
    assert resp.status == 200
    [job] = (await resp.json())["list"]
    assert sorted(job) == ["jobMetadata", "version"]
    params = {"fields": "jobId,state", "fromObj": "JOBMETADATA"}  # any case, as Mantis
    resp = await client.get(f"/api/v1/jobs/{jid}", params=params)
    assert await resp.json() == {"jobMetadata": {"jobId": jid, "state": "Accepted"}}
    params = {"fields": "workerIndex", "fromObj": "workerMetadataList"}
    resp = await client.get("/api/v1/jobClusters/demo/jobs", params=params)
    workers = (await resp.json())["list"][0]["workerMetadataList"]
    assert workers == [{"workerIndex": 0}, {"workerIndex": 1}, {"workerIndex": 0}]
    resp = await client.get("/api/v1/jobClusters/demo", params={"fields": "name,nope"})
    assert await resp.json() == {"name": "demo"}  # unknown names are left out, as Jackson
    await expect_error(
        client, master, "GET", "/api/v1/jobs", 400, "fromObj", params={**params, "fromObj": "x"}
    )


async def test_sort_by_and_start_job_id_exclusive(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    for name in ("b", "c", "a"):
        await create(client, name)
    resp = await client.get("/api/v1/jobClusters", params={"sortBy": "name", "ascending": "false"})
    assert [c["name"] for c in (await resp.json())["list"]] == ["c", "b", "a"]
    jobs = []
    for cluster in ("a", "b", "a", "c"):
        assert isinstance(master.clock, Clock)
        master.clock.now += 1
        jobs.append(await submit(client, cluster))
    resp = await client.get("/api/v1/jobs", params={"sortBy": "submittedAt"})
    assert [j["jobMetadata"]["jobId"] for j in (await resp.json())["list"]] == jobs
    resp = await client.get("/api/v1/jobs", params={"sortBy": "name", "ascending": "false"})
    listed = [j["jobMetadata"]["name"] for j in (await resp.json())["list"]]
    assert listed == ["c", "b", "a", "a"]
    resp = await client.get("/api/v1/jobs", params={"startJobIdExclusive": jobs[2]})
    assert [j["jobMetadata"]["jobId"] for j in (await resp.json())["list"]] == jobs[1::-1]
    resp = await client.get(
        "/api/v1/jobs", params={"startJobIdExclusive": jobs[0], "ascending": "true"}
    )
    assert [j["jobMetadata"]["jobId"] for j in (await resp.json())["list"]] == jobs[1:]
    for params, field in (
        ({"sortBy": "nothing"}, "sortBy"),
        ({"sortBy": "labels"}, "sortBy"),
        ({"startJobIdExclusive": "zz-9"}, "startJobIdExclusive"),
    ):
        await expect_error(client, master, "GET", "/api/v1/jobs", 400, field, params=params)


async def test_latest_job_discovery_info_and_healthcheck(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    info = "/api/v1/jobClusters/demo/latestJobDiscoveryInfo"
    await expect_error(client, master, "GET", info, 404)  # no started job
    jid = await submit(client)
    resp = await client.get("/api/v1/jobClusters/demo/healthcheck")
    health = await resp.json()
    assert resp.status == 200 and health["isHealthy"] is False
    assert health["message"] == "unready workers"
    assert health["failureReason"]["type"] == "unreadyWorkers"
    assert {w["state"] for w in health["failureReason"]["workers"]} == {"Accepted"}
    assert len(health["failureReason"]["workers"]) == 3
    start_all(master, jid)
    resp = await client.get("/api/v1/jobClusters/demo/healthcheck")
    assert await resp.json() == {
        "responseCode": "SUCCESS",
        "message": "OK",
        "isHealthy": True,
        "failureReason": None,
    }
    resp = await client.get(info)
    discovery = await resp.json()
    assert resp.status == 200 and discovery["jobId"] == jid
    assert sorted(discovery["workerAssignments"]) == ["1", "2"]
    assert discovery["workerAssignments"]["1"]["numWorkers"] == 2
    other = "/api/v1/jobClusters/demo/healthcheck?job-ids=other-1"
    assert (await (await client.get(other)).json())["isHealthy"] is True
    await expect_error(client, master, "GET", "/api/v1/jobClusters/nope/healthcheck", 404)
    await expect_error(
        client, master, "GET", "/api/v1/jobClusters/nope/latestJobDiscoveryInfo", 404
    )


async def test_master_configs_are_mantis_configlets(api_client: ApiClient) -> None:
    client = await api_client(new_master())
    resp = await client.get("/api/v1/masterConfigs")
    configs = {c["name"]: orjson.loads(c["value"]) for c in await resp.json()}
    assert configs["MigrationStrategyEnum"] == ["ONE_WORKER", "PERCENTAGE"]
    assert "UniqueHost" in configs["JobConstraints"]
    assert configs["WorkerResourceLimits"]["maxCpuCores"] == 8
    assert "CPU" in configs["ScalingReason"]


async def test_update_migration_strategy_is_stored(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    created = await create(client)
    assert created["migrationConfig"] == {"strategy": "PERCENTAGE", "configString": "{}"}
    path = "/api/v1/jobClusters/demo/actions/updateMigrationStrategy"
    body = {
        "name": "demo",
        "migrationConfig": {"strategy": "PERCENTAGE", "configString": PERCENT},
        "user": "nmahilani",
    }
    resp = await client.post(path, json=body)
    assert resp.status == 204, await resp.text()
    cluster = await (await client.get("/api/v1/jobClusters/demo")).json()
    assert cluster["migrationConfig"]["configString"] == PERCENT
    assert master.store.events[-1].action == "updateMigrationStrategy"  # type: ignore[union-attr]
    # Mantis' answers: unknown cluster 404, a body naming another cluster 400
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobClusters/NonExistent/actions/updateMigrationStrategy",
        404,
        json={**body, "name": "NonExistent"},
    )
    await expect_error(
        client, master, "POST", path, 400, "name", json={**body, "name": "NonExistent"}
    )
    bad = {**body, "migrationConfig": {"strategy": "PERCENTAGE", "configString": "{"}}
    await expect_error(client, master, "POST", path, 400, "migrationConfig.configString", json=bad)
    resp = await client.get(path)
    assert resp.status == 405


async def test_quick_submit_takes_a_job_definition_override(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    body = {
        "name": "demo",
        "user": "carol",
        "jobDefinition": {"name": "demo", "parameters": [{"name": "useRandom", "value": "true"}]},
    }
    resp = await client.post("/api/v1/jobs/actions/quickSubmit", json=body)
    assert resp.status == 201, await resp.text()
    job = await resp.json()
    assert {"name": "useRandom", "value": "true"} in job["jobMetadata"]["parameters"]
    wrong = {**body, "jobDefinition": {"name": "other"}}
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobs/actions/quickSubmit",
        400,
        "jobDefinition.name",
        json=wrong,
    )


async def test_agents_are_disabled_drained_and_enabled(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    offer = Offer("o1", "agent-1", "host-1", 64, 65536, 10_000, 1000, ((31000, 32000),))
    master.run(lambda p, now: p.on_offers([offer], now))
    for w in master.plane.job(jid).current_workers():
        wid = w.worker_id
        master.run(lambda p, now: p.heartbeat(wid, now))  # noqa: B023
    agents = (await (await client.get("/api/v1/agents")).json())["list"]
    assert [(a["agentId"], a["hostname"], a["mode"]) for a in agents] == [
        ("agent-1", "host-1", "ACTIVE")
    ]
    assert len(agents[0]["workers"]) == 3
    resp = await client.post("/api/v1/agents/host-1/actions/drain", json={"user": "ops"})
    assert resp.status == 204, await resp.text()
    assert master.plane.agent_modes == {"agent-1": (AgentMode.DRAINING, "host-1")}
    resp = await client.post("/api/v1/agents/agent-1/actions/enable", json={"user": "ops"})
    assert resp.status == 204 and master.plane.agent_modes == {}
    await expect_error(
        client, master, "POST", "/api/v1/agents/nowhere/actions/disable", 404, json={"user": "x"}
    )
    await expect_error(
        client, master, "POST", "/api/v1/agents/agent-1/actions/disable", 400, "user", json={}
    )
