"""Failures are visible through the master's API: a failed worker's message, and why a
pending worker cannot be placed, over loopback HTTP on a file store, and after a restart.

A worker that fails is replaced at once, so the job's current workers show the replacement
with how the worker it replaces ended (`resubmitReason`, `resubmitMessage`); the failed
worker itself, with its `message`, is in archivedWorkers. Why a worker is still pending
(`pendingReason`) is the matcher's answer to the last offer round: volatile, never stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.store.log import EventLog
from core.scheduling import Offer
from service.master import MasterService
from tests.fakes import RecordingResourceManager
from tests.integration.http_helpers import STATUS, ApiClient, Client, stage, status

MESSAGE = "ArtifactError: cannot import job module: No module named 'missing_dep'"


def master_on(store: EventLog) -> MasterService:
    return MasterService(store, RecordingResourceManager(), archive=store.archived_job_events)


def one_stage_cluster(memory_mb: float = 512) -> dict[str, Any]:
    return {
        "jobDefinition": {
            "name": "demo",
            "user": "alice",
            "artifactName": "demo.py",
            "version": "1",
            "schedulingInfo": {"stages": {"1": stage(1, memoryMB=memory_mb)}},
        }
    }


async def job_views(c: Client) -> tuple[list[Any], list[Any]]:
    """(current workers from GET job, the archivedWorkers list)."""
    job = await (await c.get("/api/v1/jobs/demo-1")).json()
    archived = await (await c.get("/api/v1/jobs/demo-1/archivedWorkers")).json()
    return job["workerMetadataList"], archived["list"]


async def test_a_failed_workers_message_is_in_job_get_and_archived_workers_and_survives_replay(
    tmp_path: Path,
    api_client: ApiClient,
) -> None:
    with EventLog(tmp_path / "store", snapshot_every=None) as store:
        master = master_on(store)
        c = await api_client(master)
        assert (await c.post("/api/v1/jobClusters", json=one_stage_cluster())).status == 201
        assert (await c.post("/api/v1/jobs", json={"name": "demo", "user": "a"})).status == 201
        wid = "demo-1-worker-0-1"
        master.run(lambda p, now: p.worker_launched(wid, "agent-1", "h1", (31000,), now))
        body = status(wid, type_="ERROR", state="Failed", message=MESSAGE, reason="Error")
        assert (await c.post(STATUS, json=body)).status == 204
        current, archived = await job_views(c)
        before = await (await c.get("/api/v1/jobs/demo-1")).json()
        await c.close()  # this master stops
    (replacement,) = current
    assert replacement["workerNumber"] == 2 and replacement["state"] == "Accepted"
    assert (replacement["resubmitOf"], replacement["resubmitReason"]) == (1, "Error")
    assert replacement["resubmitMessage"] == MESSAGE
    (failed,) = archived
    assert (failed["workerNumber"], failed["state"], failed["reason"]) == (1, "Failed", "Error")
    assert failed["message"] == MESSAGE

    with EventLog(tmp_path / "store", snapshot_every=None) as store:  # a restarted master
        c = await api_client(master_on(store))
        assert await job_views(c) == (current, archived)
        assert await (await c.get("/api/v1/jobs/demo-1")).json() == before
        await c.close()  # this master stops


async def test_a_worker_that_cannot_be_placed_says_why_until_it_is_placed(
    tmp_path: Path, api_client: ApiClient
) -> None:
    with EventLog(tmp_path / "store", snapshot_every=None) as store:
        master = master_on(store)
        c = await api_client(master)
        cluster = one_stage_cluster(memory_mb=28000)
        assert (await c.post("/api/v1/jobClusters", json=cluster)).status == 201
        assert (await c.post("/api/v1/jobs", json={"name": "demo", "user": "a"})).status == 201
        (worker,), _ = await job_views(c)
        assert worker["pendingReason"] == ""  # no offer round yet
        stored = len(store.load())
        small = [
            Offer("o1", "agent-1", "h1", 8, 15000, 1000, 1000, ((31000, 31999),)),
            Offer("o2", "agent-2", "h2", 8, 12000, 1000, 1000, ((31000, 31999),)),
        ]
        master.run(lambda p, now: p.on_offers(small, now))
        (worker,), _ = await job_views(c)
        assert worker["state"] == "Accepted"
        assert worker["pendingReason"] == (
            "no agent offers 28000 MB memory (largest offer: 15000 MB memory)"
        )
        assert len(store.load()) == stored  # volatile: nothing was written for it
        big = [Offer("o3", "agent-3", "h3", 8, 32000, 1000, 1000, ((31000, 31999),))]
        master.run(lambda p, now: p.on_offers(big, now))
        (worker,), _ = await job_views(c)
        assert (worker["state"], worker["pendingReason"]) == ("Launched", "")
        await c.close()  # this master stops
