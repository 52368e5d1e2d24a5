"""`compact=true` over loopback HTTP: Mantis' CompactJobInfo (v1 JobsRoute,
JobClusterProtoAdapter.toCompactJobInfo) on the job lists and the job gets."""

from __future__ import annotations

from tests.integration.http_helpers import (
    ApiClient,
    create,
    expect_error,
    new_master,
    start_all,
    submit,
)

COMPACT_FIELDS = {
    "jobId",
    "submittedAt",
    "terminatedAt",
    "user",
    "jarUrl",
    "state",
    "type",
    "numStages",
    "numWorkers",
    "totCPUs",
    "totMemory",
    "statesSummary",
    "labels",
}


async def test_compact_jobs_sum_workers_cpus_memory_and_count_states(
    api_client: ApiClient,
) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)  # stage 1: 2 workers, stage 2: 1 worker; 1 core and 512 MB each
    first = await submit(client, jobSla={"durationType": "Transient"})
    start_all(master, first)
    second = await submit(client, labels=[{"name": "team", "value": "b"}])

    resp = await client.get("/api/v1/jobs", params={"compact": "true"})
    assert resp.status == 200
    listed = (await resp.json())["list"]
    assert [j["jobId"] for j in listed] == [second, first]  # newest first, as without compact
    newest, oldest = listed
    assert set(oldest) == COMPACT_FIELDS
    assert oldest["user"] == "bob" and oldest["type"] == "Transient"
    assert (oldest["numStages"], oldest["numWorkers"]) == (2, 3)
    assert (oldest["totCPUs"], oldest["totMemory"]) == (3.0, 1536.0)
    assert oldest["statesSummary"] == {"Started": 3}
    assert oldest["state"] == "Launched" and oldest["terminatedAt"] == -1
    assert oldest["jarUrl"] == "http://artifacts.example/demo-1.zip"
    assert newest["statesSummary"] == {"Accepted": 3}
    assert {"name": "team", "value": "b"} in newest["labels"]

    for path in (f"/api/v1/jobs/{first}", f"/api/v1/jobClusters/demo/jobs/{first}"):
        resp = await client.get(path, params={"compact": "true"})
        assert await resp.json() == oldest
    resp = await client.get("/api/v1/jobClusters/demo/jobs", params={"compact": "true"})
    assert (await resp.json())["list"] == listed

    # fields and sortBy apply to the compact jobs
    params = {"compact": "true", "fields": "jobId,numWorkers", "sortBy": "jobId"}
    resp = await client.get("/api/v1/jobs", params={**params, "ascending": "true"})
    assert (await resp.json())["list"] == [
        {"jobId": first, "numWorkers": 3},
        {"jobId": second, "numWorkers": 3},
    ]

    resp = await client.delete(f"/api/v1/jobs/{first}", params={"user": "a", "reason": "done"})
    assert resp.status == 202
    resp = await client.get(f"/api/v1/jobs/{first}", params={"compact": "true"})
    ended = await resp.json()
    assert ended["terminatedAt"] > 0 and ended["state"] != "Launched"

    # without compact (or compact=false), the full view
    for params in ({}, {"compact": "false"}):
        resp = await client.get(f"/api/v1/jobs/{second}", params=params)
        assert "jobMetadata" in await resp.json()
    await expect_error(
        client, master, "GET", "/api/v1/jobs", 400, "compact", params={"compact": "yes"}
    )
