"""The dashboard's page and its one stream over real HTTP (no browser): what is pushed, when.

State events come when something changed (a burst of changes coalesced into one), never twice
the same; metrics samples sum each stage's last heartbeat payloads; the page is served with a
policy that keeps other sites from framing or scripting it.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.http import dashboard
from adapters.http.parsing import parse_cluster_definition
from common.sse import SseParser
from core.control import ControlPlane, Outcome
from service.master import MasterService
from tests.eventually import eventually
from tests.integration.http_helpers import (
    ApiClient,
    Client,
    cluster_body,
    new_master,
    start_all,
    submit,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = {"Authorization": "Bearer secret"}


class Stream:
    """The dashboard stream's events as they come (`events`), read in the background."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read(resp))

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        parser = SseParser()
        async for chunk in resp.content.iter_any():
            self.events.extend(orjson.loads(data) for data in parser.feed(chunk))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def open_stream(client: Client) -> Stream:
    resp = await client.get(dashboard.STREAM)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    return Stream(resp)


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
    api_client: ApiClient,
) -> None:
    client = await api_client(new_master())
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<script type="module" src="/dashboard/app.js">' in await resp.text()
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert resp.headers["X-Frame-Options"] == "DENY"
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        resp = await client.get(f"/dashboard/{name}")
        assert resp.status == 200 and resp.content_type == kind, name
    for path in ("/dashboard/nope.js", "/dashboard/..%2Fdashboard.py"):
        resp = await client.get(path)
        assert resp.status == 404, path


def create_cluster(master: MasterService, name: str) -> None:
    """Create a cluster through the master directly (one command, one commit)."""
    body = cluster_body(name)
    del body["jobDefinition"]["migrationConfig"]  # not what these tests are about
    definition, _ = parse_cluster_definition(body, master.clock())
    master.run(lambda plane, now: plane.create_cluster(definition, now))


def beat(plane: ControlPlane, now: float, *, wid: str, sent: dict[str, str]) -> Outcome:
    return plane.heartbeat(wid, now, sent)


def payloads(rps: float, dropped: int, cpu: float) -> dict[str, str]:
    """A worker's heartbeat payloads, as runtime.metrics sends them."""
    return {
        "WorkerMetrics": orjson.dumps({"RPS": rps}).decode(),
        "IncomingDataDrop": orjson.dumps({"onNextCount": 100, "droppedCount": dropped}).decode(),
        "ResourceUsage": orjson.dumps({"cpuUsageCurrent": cpu, "cpuLimit": 1.0}).decode(),
    }


async def test_state_is_pushed_on_change_coalesced_and_never_repeated(
    api_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "HEARTBEAT_SECS", 0.05)  # many wake-ups without a change
    master = new_master()
    client = await api_client(master, api_token="secret")
    stream = await open_stream(client)
    try:
        await eventually(lambda: stream.of("state"), "the first state")
        assert stream.of("state")[0]["auth"] is True
        assert stream.of("state")[0]["clusters"] == []
        for n in range(20):  # a burst, the stream free to run between: one state for it all
            create_cluster(master, f"c{n:02}")
            await asyncio.sleep(0)
        await eventually(lambda: len(stream.of("state")) >= 2, "the burst's state")
        # a job submitted through the API: a state event with it, in Mantis' job view
        resp = await client.post(
            "/api/v1/jobClusters/c00/jobs", json={"user": "bob"}, headers=TOKEN
        )
        assert resp.status == 201, await resp.text()
        jid = (await resp.json())["jobMetadata"]["jobId"]
        await eventually(
            lambda: any(s["jobs"] for s in stream.of("state")), "the job's state", timeout=5
        )
        await eventually(lambda: len(stream.of("metrics")) >= 5, "a few metrics samples")
    finally:
        await stream.close()
    states = stream.of("state")
    assert [len(s["clusters"]) for s in states][:2] == [0, 20]  # nothing of the burst half-way
    assert [c["name"] for c in states[1]["clusters"]] == [f"c{n:02}" for n in range(20)]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))  # never twice the same
    job = next(j for s in states for j in s["jobs"])
    assert job["jobMetadata"]["jobId"] == jid
    assert [s["numWorkers"] for s in job["stageMetadataList"]] == [2, 1]
    assert next(c for c in states[-1]["clusters"] if c["name"] == "c00")["activeJobs"] == 1


async def test_metrics_sum_each_stage_s_last_heartbeat_payloads(
    api_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "HEARTBEAT_SECS", 0.05)
    master = new_master()
    client = await api_client(master)
    create_cluster(master, "demo")
    jid = await submit(client, "demo")
    start_all(master, jid)
    reports = {1: payloads(40.0, 3, 0.25), 2: payloads(60.0, 4, 0.5)}
    for w in master.plane.job(jid).current_workers():
        sent = reports[w.number] if w.stage == 1 else payloads(7.5, 0, 0.125)
        master.run(partial(beat, wid=w.worker_id, sent=sent))
    stream = await open_stream(client)
    try:
        await eventually(lambda: stream.of("metrics"), "a metrics sample")
    finally:
        await stream.close()
    assert stream.of("state")[0]["auth"] is False
    stages = stream.of("metrics")[0]["jobs"][jid]
    assert stages == {
        "1": {
            "workersReporting": 2,
            "eventsPerSec": 100.0,
            "drops": 7.0,
            "cpuCores": 0.75,
            "cpuLimit": 2.0,
        },
        "2": {
            "workersReporting": 1,
            "eventsPerSec": 7.5,
            "drops": 0.0,
            "cpuCores": 0.125,
            "cpuLimit": 1.0,
        },
    }


async def test_the_stream_ends_when_the_master_closes(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    resp = await client.get(dashboard.STREAM)
    await resp.content.readuntil(b"\n\n")
    master.watchers.close()
    assert await asyncio.wait_for(resp.content.read(), 5) is not None
    assert resp.content.at_eof()
