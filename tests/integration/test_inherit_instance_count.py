"""deploymentStrategy.inheritInstanceCount through the REST API: a job submitted with it starts
the stage at the size the cluster's running job was scaled to; a bad one is a 400 naming it."""

from __future__ import annotations

from tests.integration.http_helpers import (
    ApiClient,
    create,
    expect_error,
    new_master,
    start_all,
    submit,
)

INHERIT_2 = {"stageDeploymentStrategyMap": {"2": {"inheritInstanceCount": True}}}


async def test_a_resubmitted_job_inherits_the_scaled_size(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    start_all(master, jid)
    resp = await client.post(
        f"/api/v1/jobs/{jid}/actions/scaleStage", json={"StageNumber": 2, "NumWorkers": 4}
    )
    assert resp.status == 204, await resp.text()

    new = await submit(client, deploymentStrategy=INHERIT_2)
    view = await (await client.get(f"/api/v1/jobs/{new}")).json()
    assert [s["numWorkers"] for s in view["stageMetadataList"]] == [2, 4]
    plain = await submit(client)
    view = await (await client.get(f"/api/v1/jobs/{plain}")).json()
    assert [s["numWorkers"] for s in view["stageMetadataList"]] == [2, 1]

    path = "/api/v1/jobClusters/demo/jobs"
    bad = {"stageDeploymentStrategyMap": {"7": {"inheritInstanceCount": True}}}
    await expect_error(
        client,
        master,
        "POST",
        path,
        400,
        "deploymentStrategy.stageDeploymentStrategyMap",
        json={"user": "bob", "deploymentStrategy": bad},
    )
    await expect_error(
        client,
        master,
        "POST",
        path,
        400,
        "deploymentStrategy.stageDeploymentStrategyMap.2.inheritInstanceCount",
        json={
            "user": "bob",
            "deploymentStrategy": {
                "stageDeploymentStrategyMap": {"2": {"inheritInstanceCount": 3}}
            },
        },
    )
