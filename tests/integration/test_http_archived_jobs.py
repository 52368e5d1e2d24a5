"""Terminal jobs compacted out of the live log are still served, from the store's archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.store.log import EventLog
from service.master import MasterService
from tests.fakes import RecordingResourceManager
from tests.integration.http_helpers import ApiClient, cluster_body


def master_on(store: EventLog) -> MasterService:
    return MasterService(store, RecordingResourceManager(), archive=store.archived_job_events)


async def test_an_archived_job_is_served_after_a_restart(
    tmp_path: Path, api_client: ApiClient
) -> None:
    with EventLog(tmp_path / "store", snapshot_every=None) as store:
        c = await api_client(master_on(store))
        assert (await c.post("/api/v1/jobClusters", json=cluster_body())).status == 201
        for _ in range(2):
            assert (await c.post("/api/v1/jobs", json={"name": "demo", "user": "a"})).status == 201
        r = await c.delete("/api/v1/jobs/demo-1", params={"user": "a", "reason": "old"})
        assert r.status == 202
        before: Any = await (await c.get("/api/v1/jobs/demo-1")).json()
        await c.close()  # this master stops
        store.compact()
        assert store.archived_job_ids() == ["demo-1"]

    with EventLog(tmp_path / "store", snapshot_every=None) as store:
        master = master_on(store)
        assert "demo-1" not in master.plane.jobs and "demo-2" in master.plane.jobs
        c = await api_client(master)
        r = await c.get("/api/v1/jobs/demo-1")
        assert r.status == 200
        after: Any = await r.json()
        assert after["jobMetadata"] == before["jobMetadata"]
        assert after["workerMetadataList"] == before["workerMetadataList"]
        workers = await (await c.get("/api/v1/jobs/demo-1/archivedWorkers")).json()
        killed = before["workerMetadataList"]
        assert [w["workerNumber"] for w in workers["list"]] == [w["workerNumber"] for w in killed]
        assert {w["state"] for w in workers["list"]} == {"Completed"}
        assert (await c.get("/api/v1/jobs/demo-3")).status == 404
        submitted = await c.post("/api/v1/jobs", json={"name": "demo", "user": "a"})
        assert (await submitted.json())["jobMetadata"]["jobId"] == "demo-3"
        await c.close()  # this master stops
