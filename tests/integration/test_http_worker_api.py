"""The master endpoints a worker needs, over real loopback HTTP: postJobStatus and SSE streams."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.http.app import create_app, serve
from adapters.store.memory import MemoryStore
from core.control import ControlPlane
from core.events import Event
from core.model import (
    ClusterSla,
    CompletedReason,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.ports import Store
from core.worker import WorkerState
from service.master import MasterService
from tests.fakes import memory_master
from tests.integration.http_helpers import HOST, STATUS, T0, ApiClient, Clock, status

W1, W2, W3 = "demo-1-worker-0-1", "demo-1-worker-1-2", "demo-1-worker-0-3"  # stage 1, 1, 2
HB_FRAME = b'data: {"jobId":"HB_JobId","workerAssignments":{}}\n\n'


def demo_master(submit: bool = True, store: Store | None = None) -> MasterService:
    """Cluster `demo` (stages of 2 and 1 workers), its job demo-1 submitted if `submit`."""
    master = memory_master(Clock(), store)
    stages = tuple(StageSchedulingInfo(n, MachineDefinition(1, 512)) for n in (2, 1))
    config = JobClusterConfig("demo.zip", "1", T0, SchedulingInfo(stages))
    master.run(
        lambda p, now: p.create_cluster(
            JobClusterDefinition("demo", (config,), sla=ClusterSla()), now
        )
    )
    if submit:
        master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    return master


def launch(master: MasterService, *wids: str) -> None:
    for i, wid in enumerate(wids):
        host, ports = f"host-{i + 1}", (31000 + i, 32000 + i)
        master.run(lambda p, now: p.worker_launched(wid, "agent-1", host, ports, now))  # noqa: B023


async def frame(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> bytes:
    """The next SSE frame, ``\\n\\n`` included."""
    return await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout)


def data(frame_: bytes) -> Any:
    assert frame_.startswith(b"data: ") and frame_.endswith(b"\n\n"), frame_
    return orjson.loads(frame_[6:-2])


def state(master: MasterService, wid: str) -> WorkerState:
    return master.plane.workers[wid].state


# ------------------------------------------------------------------------ postJobStatus


async def test_statuses_and_heartbeats_move_workers_and_are_persisted_first(
    api_client: ApiClient,
) -> None:
    master = demo_master()
    launch(master, W1, W2, W3)

    client = await api_client(master)

    async def post(body: dict[str, Any]) -> None:
        resp = await client.post(STATUS, json=body)
        assert resp.status == 204, await resp.text()

    await post(status(W1, state="StartInitiated"))
    assert state(master, W1) is WorkerState.StartInitiated
    master.clock.now = T0 + 5  # type: ignore[attr-defined]
    payloads = [
        {"type": "SubscriptionState", "data": "true"},
        {"type": "IncomingDataDrop", "data": '{"onNextCount":3,"droppedCount":1}'},
    ]
    await post(status(W1, "HEARTBEAT", "Noop", payloads=payloads))
    w1 = master.plane.workers[W1]
    assert (w1.state, w1.last_heartbeat_at, w1.is_subscribed) == (
        WorkerState.Started,
        T0 + 5,
        True,
    )
    assert w1.started_at == T0 + 5
    await post(status(W2, "HEARTBEAT", state=None))  # a heartbeat needs no state
    assert state(master, W2) is WorkerState.Started
    await post(status(W3, state="Noop"))  # ignored, as Mantis ignores it
    assert state(master, W3) is WorkerState.Launched
    await post(status(W3, "ERROR", "Failed", reason="Error", message="boom"))
    w3 = master.plane.workers[W3]
    assert (w3.state, w3.reason, w3.message) == (
        WorkerState.Failed,
        CompletedReason.Error,
        "boom",
    )
    # Stage 2 got a replacement worker; an unknown worker is answered, not rejected.
    assert [w.number for w in master.plane.job("demo-1").stages[2]] == [4]
    await post(status("demo-1-worker-0-99", "HEARTBEAT", "Noop"))
    # Every change went through the event log: replaying it rebuilds the same plane.
    assert ControlPlane.replay(master.store.load()).snapshot() == master.plane.snapshot()


BAD_BODIES: list[tuple[Any, str]] = [
    (b"{not json", "body"),
    ([1, 2], "body"),
    ({"status": status(W1)["status"]}, "jobId"),
    ({"jobId": "demo-1"}, "status"),
    ({**status(W1), "status": "Started"}, "status"),
    (status(W1, jobId="demo-2"), "status.jobId"),
    (status(W1, stageNum=True), "status.stageNum"),
    (status(W1, workerIndex="0"), "status.workerIndex"),
    (status(W1, workerIndex=-1), "status.workerIndex"),
    (status(W1, workerNumber=None), "status.workerNumber"),
    (status(W1, type="PING"), "status.type"),
    (status(W1, state="Running"), "status.state"),
    (status(W1, state=None), "status.state"),
    (status(W1, "HEARTBEAT", state="Bogus"), "status.state"),
    (status(W1, reason="Oops"), "status.reason"),
    (status(W1, timestamp="now"), "status.timestamp"),
    (status(W1, payloads={"type": "x"}), "status.payloads"),
    (status(W1, "HEARTBEAT", payloads=["x"]), "status.payloads[0]"),
    (
        status(W1, "HEARTBEAT", payloads=[{"type": "SubscriptionState", "data": True}]),
        "status.payloads[0].data",
    ),
]


async def test_bad_bodies_are_400_naming_the_field_and_change_nothing(
    api_client: ApiClient,
) -> None:
    master = demo_master()
    launch(master, W1, W2, W3)
    before, events = master.plane.snapshot(), len(master.store.events)

    client = await api_client(master)
    for body, field in BAD_BODIES:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = await client.post(STATUS, data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400, (field, await resp.text())
        assert resp.content_type == "application/json"
        got = await resp.json()
        assert got["field"] == field, (body, got)
        assert got["error"].startswith(f"{field}: ")
    assert master.plane.snapshot() == before and len(master.store.events) == events
    assert all(w.last_heartbeat_at is None for w in master.plane.workers.values())


class FillingStore(MemoryStore):
    """A store whose disk can be full: appends raise ENOSPC and keep nothing."""

    full = False

    def append(self, events: Sequence[Event]) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(events)


async def test_a_write_that_is_not_persisted_changes_nothing_and_the_master_recovers_by_itself(
    api_client: ApiClient,
) -> None:
    store = FillingStore()
    master = demo_master(store=store)
    launch(master, W1)
    store.full = True
    before, events, calls = master.plane.snapshot(), len(store.events), len(master.rm.calls)

    client = await api_client(master)
    with master.watchers.job("demo-1") as changed:
        resp = await client.post(STATUS, json=status(W1, state="Started"))
        body = await resp.json()
        assert resp.status == 507 and body["field"] == "store", body
        assert "no space left" in body["error"]
        assert master.plane.snapshot() == before
        acted = [name for name, _ in master.rm.calls[calls:] if name != "revive"]
        assert len(store.events) == events and acted == []  # asks for offers again only
        health = await client.get("/api/v1/healthcheck")
        assert health.status == 503 and "no space" in (await health.json())["failureReason"]
        store.full = False  # space returns: the next write works, no restart
        changed.clear()
        assert (await client.post(STATUS, json=status(W1, state="Started"))).status == 204
        assert changed.is_set() and master.plane.workers[W1].state is WorkerState.Started
        assert (await client.get("/api/v1/healthcheck")).status == 200
        assert [type(e).__name__ for e in store.events[events:]][:1] == ["WorkerStateChanged"]


async def test_unexpected_errors_are_500_without_internals(api_client: ApiClient) -> None:
    master = demo_master()

    def broken(*_: Any) -> Any:
        raise RuntimeError("secret detail")

    master.plane.heartbeat = broken  # type: ignore[method-assign,assignment]

    client = await api_client(master)
    resp = await client.post(STATUS, json=status(W1, "HEARTBEAT", "Noop"))
    assert resp.status == 500
    assert await resp.json() == {"error": "internal server error"}


# ------------------------------------------------------------------------ jobDiscoveryStream


async def test_discovery_stream_sends_started_workers_then_each_change_and_ends_with_the_job(
    api_client: ApiClient,
) -> None:
    master = demo_master()
    launch(master, W1, W2, W3)
    master.run(lambda p, now: p.worker_status(W1, WorkerState.Started, now))

    client = await api_client(master)
    resp = await client.get("/api/v1/jobDiscoveryStream/demo-1")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await frame(resp) == (
        b'data: {"jobId":"demo-1","workerAssignments":{'
        b'"1":{"stage":1,"numWorkers":2,"hosts":{"1":{"host":"host-1","state":"Started",'
        b'"workerIndex":0,"workerNumber":1,"port":[31000,32000],"metricsPort":-1}}},'
        b'"2":{"stage":2,"numWorkers":1,"hosts":{}}}}\n\n'
    )
    # A worker starts through the HTTP API: one new frame.
    assert (await client.post(STATUS, json=status(W3, "HEARTBEAT", "Noop"))).status == 204
    hosts = data(await frame(resp))["workerAssignments"]["2"]["hosts"]
    assert hosts == {
        "3": {
            "host": "host-3",
            "state": "Started",
            "workerIndex": 0,
            "workerNumber": 3,
            "port": [31002, 32002],
            "metricsPort": -1,
        }
    }
    # A burst between two reads is coalesced into one frame.
    master.run(lambda p, now: p.worker_status(W2, WorkerState.Started, now))
    master.run(lambda p, now: p.worker_status(W3, WorkerState.Failed, now))
    info = data(await frame(resp))["workerAssignments"]
    assert sorted(info["1"]["hosts"]) == ["1", "2"] and info["2"]["hosts"] == {}
    # The job ends: the final info, then the end of the stream.
    master.run(lambda p, now: p.kill_job("demo-1", "alice", "done", now))
    final = data(await frame(resp))
    assert all(s["hosts"] == {} for s in final["workerAssignments"].values())
    assert await asyncio.wait_for(resp.content.read(), 5) == b""


async def test_discovery_stream_heartbeats_with_send_hb(api_client: ApiClient) -> None:
    master = demo_master()

    client = await api_client(master, heartbeat_secs=0.05)
    resp = await client.get("/api/v1/jobDiscoveryStream/demo-1?sendHB=true")
    first = data(await frame(resp))
    assert first["jobId"] == "demo-1"
    assert [await frame(resp) for _ in range(2)] == [HB_FRAME, HB_FRAME]
    launch(master, W1)
    master.run(lambda p, now: p.heartbeat(W1, now))
    # Heartbeats may interleave; the change still arrives.
    while (got := await frame(resp)) == HB_FRAME:
        pass
    assert list(data(got)["workerAssignments"]["1"]["hosts"]) == ["1"]


async def test_not_found_and_bad_parameters_are_json(api_client: ApiClient) -> None:
    master = demo_master()

    client = await api_client(master)
    for path, code, body in [
        ("/api/v1/jobDiscoveryStream/demo-9", 404, {"error": "job 'demo-9' not found"}),
        ("/api/v1/lastSubmittedJobIdStream/nope", 404, {"error": "job cluster 'nope' not found"}),
        (
            "/api/v1/jobDiscoveryStream/demo-1?sendHB=yes",
            400,
            {"error": "sendHB: must be true or false, got 'yes'", "field": "sendHB"},
        ),
        ("/api/v1/nothing", 404, {"error": "Not Found"}),
        (STATUS, 405, {"error": "Method Not Allowed"}),
    ]:
        resp = await client.get(path)
        assert (resp.status, await resp.json()) == (code, body), path
    assert (await client.get(STATUS)).headers["Allow"] == "POST"


# ------------------------------------------------------------------------ lastSubmittedJobIdStream


async def test_last_submitted_stream_follows_new_submissions(api_client: ApiClient) -> None:
    master = demo_master(submit=False)

    client = await api_client(master, heartbeat_secs=0.05)
    resp = await client.get("/api/v1/lastSubmittedJobIdStream/demo?sendHB=true")
    assert resp.status == 200
    # No job yet: only heartbeats.
    assert await frame(resp) == b'data: {"name":"HB_JobId","jobId":"HB_JobId"}\n\n'
    for n in (1, 2):
        master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
        while (got := await frame(resp)).startswith(b'data: {"name":"HB_JobId"'):
            pass
        assert got == b'data: {"name":"demo","jobId":"demo-%d"}\n\n' % n
    # A new subscriber gets the last one at once.
    late = await client.get("/api/v1/lastSubmittedJobIdStream/demo")
    assert await frame(late) == b'data: {"name":"demo","jobId":"demo-2"}\n\n'


# ------------------------------------------------------------------------ serve


async def test_serve_binds_loopback_by_default() -> None:
    runner, port = await serve(create_app(demo_master()))
    try:
        assert runner.addresses[0][:2] == (HOST, port)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{HOST}:{port}/api/v1/jobDiscoveryStream/demo-1") as resp,
        ):
            assert data(await frame(resp))["jobId"] == "demo-1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("send_hb", ["false", "true"])
async def test_open_streams_end_when_the_server_shuts_down(send_hb: str) -> None:
    runner, port = await serve(create_app(demo_master()))
    async with aiohttp.ClientSession() as http:
        url = f"http://{HOST}:{port}/api/v1/jobDiscoveryStream/demo-1?sendHB={send_hb}"
        async with http.get(url) as resp:
            await frame(resp)
            await asyncio.wait_for(runner.cleanup(), 5)
