"""What the HTTP API tests share: a master on a settable clock, Mantis-shaped request bodies,
and `expect_error`, the check that a refused call names its field and changes nothing.

The server itself is the `api_client` fixture (conftest.py): the app of
`adapters.http.app.create_app` behind pytest-aiohttp's `aiohttp_client`, on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from service.master import MasterService
from tests.fakes import memory_master

HOST = "127.0.0.1"
T0 = 1_800_000_000.0
JSON_TYPE = {"Content-Type": "application/json"}
STATUS = "/api/v1/jobs/actions/postJobStatus"
Client = TestClient[Any, Any]
ApiClient = Callable[..., Awaitable[Client]]  # api_client(master, **create_app options)


class Clock:
    """A clock the test sets (`clock.now = ...`), starting at T0."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def new_master() -> MasterService:
    return memory_master(Clock())


def stage(instances: int = 1, scalable: bool = False, **machine: Any) -> dict[str, Any]:
    return {
        "numberOfInstances": instances,
        "machineDefinition": {
            "cpuCores": 1,
            "memoryMB": 512,
            "networkMbps": 128,
            "diskMB": 100,
            "numPorts": 1,
            **machine,
        },
        "scalable": scalable,
        "hardConstraints": [],
        "softConstraints": None,
    }


def cluster_body(name: str = "demo", version: str = "1", **extra: Any) -> dict[str, Any]:
    """A NamedJobDefinition as Mantis' docs show it (numbers as strings included)."""
    definition = {
        "name": name,
        "user": "alice",
        "jobJarFileLocation": f"http://artifacts.example/{name}-{version}.zip",
        "version": version,
        "schedulingInfo": {"stages": {"0": stage(), "1": stage(2), "2": stage(1, scalable=True)}},
        "parameters": [{"name": "useRandom", "value": False}],
        "labels": [{"name": "team", "value": "streams"}],
        "slaMin": "0",
        "slaMax": "0",
        "cronSpec": None,
        "cronPolicy": "KEEP_EXISTING",
        "migrationConfig": {"strategy": "PERCENTAGE", "configString": "{}"},
        **extra,
    }
    return {"jobDefinition": definition, "owner": {"name": "Alice", "contactEmail": "a@x"}}


async def create(client: Client, name: str = "demo", **extra: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/jobClusters", json=cluster_body(name, **extra))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def submit(client: Client, cluster: str = "demo", **body: Any) -> str:
    resp = await client.post(f"/api/v1/jobClusters/{cluster}/jobs", json={"user": "bob", **body})
    assert resp.status == 201, await resp.text()
    jid: str = (await resp.json())["jobMetadata"]["jobId"]
    return jid


async def expect_error(
    client: Client,
    master: MasterService,
    method: str,
    path: str,
    status: int,
    field: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The call fails with `status` as JSON naming `field`, and changes nothing."""
    before = (len(master.store.events), master.plane.snapshot())
    resp = await client.request(method, path, **kwargs)
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    body: dict[str, Any] = await resp.json()
    assert body.get("field") == field, body
    assert (len(master.store.events), master.plane.snapshot()) == before
    return body


def start_all(master: MasterService, jid: str) -> None:
    """Launch and heartbeat every current worker of the job, so that it becomes Launched."""
    job = master.plane.job(jid)
    for i, w in enumerate(job.current_workers()):
        wid, ports = w.worker_id, (31000 + i,)
        master.run(lambda p, now: p.worker_launched(wid, "agent-1", "host-1", ports, now))  # noqa: B023
        master.run(lambda p, now: p.heartbeat(wid, now))  # noqa: B023


def status(
    wid: str, type_: str = "INFO", state: str | None = "Started", **extra: Any
) -> dict[str, Any]:
    """A postJobStatus body (Mantis' Status) from worker `wid`."""
    job, _, rest = wid.rpartition("-worker-")
    index, number = (int(x) for x in rest.split("-"))
    body: dict[str, Any] = {
        "jobId": job,
        "status": {
            "jobId": job,
            "stageNum": 1,
            "workerIndex": index,
            "workerNumber": number,
            "type": type_,
            "message": "hello",
            "hostname": "host-1",
            "timestamp": 1_800_000_000_000,
            "reason": None,
            "payloads": [],
        },
    }
    if state is not None:
        body["status"]["state"] = state
    body["status"].update(extra)
    return body
