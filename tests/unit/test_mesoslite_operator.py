"""mesoslite's operator surface in-process: the v1 operator API (`/api/v1`), its event stream,
the read-only endpoints and maintenance, against a master on a real loopback server with a
scripted agent (mesoslite_fakes.FakeAgent) and a v1 framework (mesoslite.client). Shapes are
checked against include/mesos/v1/master/master.proto and mesos.proto field names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from mesoslite.client import SchedulerClient, command_task
from mesoslite.flags import MasterConfig
from mesoslite.http import create_app
from mesoslite.leadership import Leadership
from mesoslite.master import MesosliteMaster
from mesoslite.recordio import Decoder
from tests.eventually import eventually, eventually_value
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, FirstFitAllocator, offer

JSON = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def cluster(**config: Any) -> AsyncIterator[tuple[MesosliteMaster, str]]:
    settings: dict[str, Any] = {
        "allocation_interval": 0.02,
        "heartbeat_interval": 60.0,
        "agent_ping_timeout": 60.0,
        "agent_reregister_timeout": 0.0,
        "status_update_retry_min": 30.0,
        **config,
    }
    master = MesosliteMaster(MasterConfig(**settings), FirstFitAllocator())
    server = TestServer(create_app(master), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def operate(url: str, call: dict[str, Any], **headers: str) -> tuple[int, Any]:
    """POST one operator call; (status, parsed JSON body or the text)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/api/v1", data=orjson.dumps(call), headers={**JSON, **headers}) as r,
    ):
        body = await r.read()
        if r.content_type == "application/json" and body:
            return r.status, orjson.loads(body)
        return r.status, body.decode()


async def ok(url: str, call: dict[str, Any]) -> dict[str, Any]:
    status, body = await operate(url, call)
    assert status == 200, body
    return body if isinstance(body, dict) else {}


async def get(url: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + path) as r:
        body = await r.read()
        return r.status, orjson.loads(body) if r.content_type == "application/json" else body


class OperatorStream:
    """A SUBSCRIBE connection to the operator API, its events decoded as they come."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http = aiohttp.ClientSession()

    async def open(self, url: str) -> None:
        resp = await self._http.post(
            url + "/api/v1", data=orjson.dumps({"type": "SUBSCRIBE"}), headers=JSON
        )
        assert resp.status == 200
        self._task = asyncio.create_task(self._read(resp))

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        decoder = Decoder()
        async for chunk in resp.content.iter_any():
            self.events += [orjson.loads(r) for r in decoder.feed(chunk)]
            self.arrived.set()

    async def next(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for i, event in enumerate(self.events):
                    if event["type"] == kind:
                        return self.events.pop(i)
                self.arrived.clear()
                await self.arrived.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.close()


async def running_task(
    url: str, agent: FakeAgent, task_id: str = "t1", **kw: Any
) -> SchedulerClient:
    """A subscribed framework with one task TASK_RUNNING (acknowledged) on `agent`."""
    client = SchedulerClient(url)
    await client.subscribe(FRAMEWORK)
    o = await offer(client)
    task = command_task(task_id, agent.id or "", "sleep 100", **kw)
    await client.accept([o["id"]["value"]], [task])
    await agent.next_event("RUN_TASK")
    await agent.update(client.framework_id or "", task_id, "TASK_RUNNING")
    update = await client.next_event("UPDATE")
    await client.acknowledge(update["update"]["status"])
    await agent.next_event("ACKNOWLEDGE")
    return client


@pytest.mark.timeout(20)
async def test_get_calls_answer_in_the_master_proto_shapes() -> None:
    async with cluster(weights={"prod": 2.0}) as (master, url):
        agent = FakeAgent(url)
        await agent.register(attributes="zone:a")
        client = await running_task(url, agent)
        fid = client.framework_id

        assert await ok(url, {"type": "GET_HEALTH"}) == {
            "type": "GET_HEALTH",
            "get_health": {"healthy": True},
        }
        flags = (await ok(url, {"type": "GET_FLAGS"}))["get_flags"]["flags"]
        assert {"name": "allocation_interval", "value": "0.02"} in flags
        version = (await ok(url, {"type": "GET_VERSION"}))["get_version"]["version_info"]
        assert version["version"] == "1.11.0"
        got_master = (await ok(url, {"type": "GET_MASTER"}))["get_master"]
        assert got_master["master_info"]["port"] == master.port
        assert got_master["start_time"] > 0 and got_master["elected_time"] > 0

        agents = (await ok(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        assert len(agents) == 1
        a = agents[0]
        assert a["agent_info"]["id"] == {"value": agent.id}
        assert a["agent_info"]["hostname"] == "127.0.0.1"
        assert a["active"] is True and a["deactivated"] is False
        assert {r["name"] for r in a["total_resources"]} == {"cpus", "mem", "ports"}
        cpus = next(r for r in a["allocated_resources"] if r["name"] == "cpus")
        assert cpus == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}, "role": "*"}
        assert set(a["registered_time"]) == {"nanoseconds"}

        fws = (await ok(url, {"type": "GET_FRAMEWORKS"}))["get_frameworks"]
        fw = fws["frameworks"][0]
        assert fw["framework_info"]["id"] == {"value": fid}
        assert (fw["active"], fw["connected"], fw["recovered"]) == (True, True, False)
        assert fw["allocated_resources"][0]["allocation_info"] == {"role": "*"}
        assert fws["completed_frameworks"] == []

        tasks = (await ok(url, {"type": "GET_TASKS"}))["get_tasks"]
        t = tasks["tasks"][0]
        assert t["task_id"] == {"value": "t1"} and t["framework_id"] == {"value": fid}
        assert t["agent_id"] == {"value": agent.id} and t["state"] == "TASK_RUNNING"
        assert [s["state"] for s in t["statuses"]] == ["TASK_STAGING", "TASK_RUNNING"]
        assert t["status_update_state"] == "TASK_RUNNING" and t["user"] == "test"
        assert tasks["completed_tasks"] == [] and tasks["unreachable_tasks"] == []

        state = (await ok(url, {"type": "GET_STATE"}))["get_state"]
        assert set(state) == {"get_tasks", "get_executors", "get_frameworks", "get_agents"}
        assert state["get_tasks"]["tasks"][0]["task_id"] == {"value": "t1"}
        assert (await ok(url, {"type": "GET_EXECUTORS"}))["get_executors"] == {"executors": []}

        roles = (await ok(url, {"type": "GET_ROLES"}))["get_roles"]["roles"]
        assert [(r["name"], r["weight"]) for r in roles] == [("*", 1.0), ("prod", 2.0)]
        assert roles[0]["frameworks"] == [{"value": fid}]
        weights = (await ok(url, {"type": "GET_WEIGHTS"}))["get_weights"]["weight_infos"]
        assert weights == [{"role": "prod", "weight": 2.0}]

        metrics = (await ok(url, {"type": "GET_METRICS", "get_metrics": {}}))["get_metrics"]
        values = {m["name"]: m["value"] for m in metrics["metrics"]}
        assert values["master/tasks_running"] == 1.0 and values["master/elected"] == 1.0
        assert values["master/slaves_active"] == 1.0 and values["master/cpus_used"] == 0.1
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_bad_operator_calls_get_mesos_status_codes_and_change_nothing() -> None:
    async with cluster(weights={"prod": 2.0}) as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/v1") as r:
                assert r.status == 405 and r.headers["Allow"] == "POST"
            async with http.post(
                url + "/api/v1", data=b"{}", skip_auto_headers=["Content-Type"]
            ) as r:
                assert r.status == 400
                assert "Content-Type" in await r.text()
            async with http.post(
                url + "/api/v1", data=b"x", headers={"Content-Type": "application/x-protobuf"}
            ) as r:
                assert r.status == 415
            async with http.post(url + "/api/v1", data=b"{nope", headers=JSON) as r:
                assert r.status == 400 and "Failed to parse body into JSON" in await r.text()
        assert await operate(url, {"type": "GET_HEALTH"}, Accept="text/html") == (
            406,
            "Expecting 'Accept' to allow 'application/json'",
        )
        status, message = await operate(url, {"type": "NOT_A_CALL"})
        assert status == 400 and "NOT_A_CALL" in message
        status, message = await operate(url, {"type": "RESERVE_RESOURCES"})
        assert status == 501 and "RESERVE_RESOURCES" in message

        bad_weights = {
            "type": "UPDATE_WEIGHTS",
            "update_weights": {
                "weight_infos": [{"role": "ok", "weight": 3.0}, {"role": "-bad", "weight": 1.0}]
            },
        }
        status, message = await operate(url, bad_weights)
        assert status == 400 and "weight_infos[1].role" in message
        zero = {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "a"}]}}
        status, message = await operate(url, zero)
        assert status == 400 and "weight_infos[0].weight" in message
        assert master.weights == {"prod": 2.0}

        status, message = await operate(
            url, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}
        )
        assert (status, message) == (400, "No framework found with specified ID")
        status, message = await operate(
            url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "x"}}}
        )
        assert (status, message) == (404, "Agent 'x' not found")
        status, message = await operate(url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {}})
        assert status == 400 and "mark_agent_gone.agent_id" in message
        assert list(master.agents) == [agent.id]
        await agent.close()


@pytest.mark.timeout(20)
async def test_update_weights_reaches_the_allocator_and_get_weights() -> None:
    async with cluster() as (master, url):
        seen: list[tuple[str, float]] = []
        master.allocator.set_weight = lambda role, weight: seen.append((role, weight))  # type: ignore[method-assign]
        call = {
            "type": "UPDATE_WEIGHTS",
            "update_weights": {"weight_infos": [{"role": "dev/team", "weight": 0.5}]},
        }
        assert await operate(url, call) == (200, "")
        assert seen == [("dev/team", 0.5)]
        weights = (await ok(url, {"type": "GET_WEIGHTS"}))["get_weights"]["weight_infos"]
        assert weights == [{"role": "dev/team", "weight": 0.5}]


@pytest.mark.timeout(20)
async def test_subscribe_streams_state_then_task_agent_and_framework_events() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        stream = OperatorStream()
        await stream.open(url)
        subscribed = (await stream.next("SUBSCRIBED"))["subscribed"]
        assert subscribed["heartbeat_interval_seconds"] == 60.0
        assert subscribed["get_state"]["get_agents"]["agents"][0]["agent_info"]["id"] == {
            "value": agent.id
        }
        client = await running_task(url, agent)
        fid = client.framework_id
        added = (await stream.next("FRAMEWORK_ADDED"))["framework_added"]["framework"]
        assert added["framework_info"]["id"] == {"value": fid}
        task = (await stream.next("TASK_ADDED"))["task_added"]["task"]
        assert task["task_id"] == {"value": "t1"} and task["state"] == "TASK_STAGING"
        updated = (await stream.next("TASK_UPDATED"))["task_updated"]
        assert updated["framework_id"] == {"value": fid} and updated["state"] == "TASK_RUNNING"
        assert updated["status"]["task_id"] == {"value": "t1"}

        other = FakeAgent(url)
        await other.register()
        added_agent = (await stream.next("AGENT_ADDED"))["agent_added"]["agent"]
        assert added_agent["agent_info"]["id"] == {"value": other.id}
        assert await operate(
            url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": other.id}}}
        ) == (200, "")
        removed = (await stream.next("AGENT_REMOVED"))["agent_removed"]
        assert removed == {"agent_id": {"value": other.id}}

        await operate(url, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": fid}}})
        gone = (await stream.next("FRAMEWORK_REMOVED"))["framework_removed"]
        assert gone["framework_info"]["id"] == {"value": fid}
        killed = (await stream.next("TASK_UPDATED"))["task_updated"]
        assert killed["state"] == "TASK_KILLED"
        await agent.next_event("SHUTDOWN_FRAMEWORK")
        assert fid not in master.frameworks

        master.subscribers.heartbeat()
        await stream.next("HEARTBEAT")
        await stream.close()
        await client.close()
        await agent.close()
        await other.close()


@pytest.mark.timeout(20)
async def test_mark_agent_gone_ends_its_tasks_gone_by_operator_and_refuses_it_back() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await running_task(url, agent)
        aid = agent.id
        await ok(url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": aid}}})
        shutdown = await agent.next_event("SHUTDOWN_FRAMEWORK")
        assert shutdown["shutdown_framework"]["framework_id"] == {"value": client.framework_id}
        update = (await client.next_event("UPDATE"))["update"]["status"]
        assert update["state"] == "TASK_GONE_BY_OPERATOR"
        assert update["reason"] == "REASON_AGENT_REMOVED_BY_OPERATOR"
        assert aid not in master.agents
        # Again: nothing to do, 200 as Mesos answers.
        await ok(url, {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": aid}}})
        again = FakeAgent(url)
        with pytest.raises(AssertionError, match="marked gone"):
            await again.register(agent_id=aid)
        assert aid not in master.agents
        await client.close()
        await agent.close()
        await again.close()


@pytest.mark.timeout(20)
async def test_readonly_endpoints_list_and_filter_like_mesos() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        o = await offer(client)
        tasks = [command_task(f"t{i}", agent.id or "", "true", cpus=0.1) for i in range(3)]
        await client.accept([o["id"]["value"]], tasks)
        for _ in range(3):
            await agent.next_event("RUN_TASK")
        fid = client.framework_id

        for prefix in ("/master", ""):
            status, body = await get(url, prefix + "/tasks?order=asc")
            assert status == 200 and [t["id"] for t in body["tasks"]] == ["t0", "t1", "t2"]
        status, body = await get(url, "/master/tasks?limit=1&offset=1&order=asc")
        assert [t["id"] for t in body["tasks"]] == ["t1"]
        status, body = await get(url, "/master/tasks?task_id=t2")
        assert [(t["id"], t["framework_id"]) for t in body["tasks"]] == [("t2", fid)]
        status, body = await get(url, "/master/tasks?framework_id=other")
        assert body == {"tasks": []}
        for query, name in (("limit=x", "limit"), ("offset=-1", "offset"), ("order=up", "order")):
            status, message = await get(url, "/master/tasks?" + query)
            assert status == 400 and name.encode() in message

        status, body = await get(url, "/slaves")
        assert [s["id"] for s in body["slaves"]] == [agent.id] and body["recovered_slaves"] == []
        assert body["slaves"][0]["version"] == "1.11.0"
        status, body = await get(url, "/master/slaves?slave_id=nope")
        assert body["slaves"] == []
        status, body = await get(url, f"/master/frameworks?framework_id={fid}")
        assert [f["id"] for f in body["frameworks"]] == [fid]
        status, body = await get(url, "/master/state-summary")
        assert body["slaves"][0]["TASK_STAGING"] == 3 and body["slaves"][0]["framework_ids"] == [
            fid
        ]
        assert body["frameworks"][0]["TASK_STAGING"] == 3
        status, body = await get(url, "/master/roles")
        assert body["roles"][0]["name"] == "*" and body["roles"][0]["resources"]["cpus"] == 0.3
        status, body = await get(url, "/master/flags")
        assert body["flags"]["allocation_interval"] == "0.02"
        status, body = await get(url, "/metrics/snapshot")
        assert body["master/tasks_staging"] == 3 and body["master/frameworks_active"] == 1
        assert body["master/slaves_connected"] == 1 and body["master/outstanding_offers"] >= 0
        async with aiohttp.ClientSession() as http, http.post(url + "/master/slaves") as r:
            assert r.status == 405
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_deactivated_agent_is_not_offered_until_reactivated() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        first = await offer(client)
        aid = {"agent_id": {"value": agent.id}}
        assert await operate(url, {"type": "REACTIVATE_AGENT", "reactivate_agent": aid}) == (
            400,
            "Agent is not deactivated",
        )
        await ok(url, {"type": "DEACTIVATE_AGENT", "deactivate_agent": aid})
        rescind = await client.next_event("RESCIND")
        assert rescind["rescind"]["offer_id"] == first["id"]
        agents = (await ok(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        assert (agents[0]["active"], agents[0]["deactivated"]) == (False, True)
        master.allocate()
        assert client.drain("OFFERS") == []
        await ok(url, {"type": "REACTIVATE_AGENT", "reactivate_agent": aid})
        again = await offer(client)
        assert again["agent_id"] == {"value": agent.id}
        status, message = await operate(
            url, {"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": "x"}}}
        )
        assert (status, message) == (400, "Unknown agent")
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_drain_kills_with_the_bounded_grace_then_the_agent_is_drained() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        long_policy = {"grace_period": {"nanoseconds": 60_000_000_000}}
        client = await running_task(url, agent, kill_policy=long_policy)
        drain = {
            "type": "DRAIN_AGENT",
            "drain_agent": {
                "agent_id": {"value": agent.id},
                "max_grace_period": {"seconds": 2, "nanos": 0},
            },
        }
        await ok(url, drain)
        kill = (await agent.next_event("KILL_TASK"))["kill_task"]
        assert kill["task_id"] == {"value": "t1"}
        assert kill["kill_policy"] == {"grace_period": {"nanoseconds": 2_000_000_000}}
        agents = (await ok(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        assert agents[0]["drain_info"] == {
            "state": "DRAINING",
            "config": {"mark_gone": False, "max_grace_period": {"nanoseconds": 2_000_000_000}},
        }
        assert agents[0]["deactivated"] is True
        status, message = await operate(
            url, {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent.id}}}
        )
        assert (status, message) == (400, "Agent is still in the DRAINING state")
        await agent.update(client.framework_id or "", "t1", "TASK_KILLED")
        update = await client.next_event("UPDATE")
        assert update["update"]["status"]["state"] == "TASK_KILLED"
        await client.acknowledge(update["update"]["status"])

        async def drained() -> bool:
            body = await ok(url, {"type": "GET_AGENTS"})
            return bool(body["get_agents"]["agents"][0]["drain_info"]["state"] == "DRAINED")

        await eventually_value(drained, "the agent DRAINED", timeout=3)
        await ok(
            url, {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent.id}}}
        )
        assert (
            "drain_info" not in (await ok(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"][0]
        )
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_drain_with_mark_gone_reports_gone_by_operator_and_removes_the_agent() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await running_task(url, agent)
        drain = {
            "type": "DRAIN_AGENT",
            "drain_agent": {"agent_id": {"value": agent.id}, "mark_gone": True},
        }
        await ok(url, drain)
        await agent.next_event("KILL_TASK")
        await agent.update(client.framework_id or "", "t1", "TASK_KILLED")
        update = await client.next_event("UPDATE")
        assert update["update"]["status"]["state"] == "TASK_GONE_BY_OPERATOR"
        await client.acknowledge(update["update"]["status"])
        await eventually(lambda: agent.id not in master.agents, "the agent gone", timeout=3)
        assert agent.id in master.gone_agents
        bad = {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": agent.id}}}
        assert await operate(url, bad) == (400, "Unknown agent")
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_maintenance_schedule_sends_inverse_offers_and_records_the_answers() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await running_task(url, agent)
        window = {
            "machine_ids": [{"hostname": "127.0.0.1", "ip": "127.0.0.1"}],
            "unavailability": {"start": {"nanoseconds": 1_000}, "duration": {"nanoseconds": 5}},
        }
        schedule = {"type": "UPDATE_MAINTENANCE_SCHEDULE"}
        for bad, message in (
            ({"windows": [{**window, "machine_ids": []}]}, "List of machines"),
            ({"windows": [{**window, "machine_ids": [{}]}]}, "Both 'hostname' and 'ip'"),
            ({"windows": [{**window, "machine_ids": [{"ip": "x"}]}]}, "IP address"),
            ({"windows": [window, window]}, "appears more than once"),
        ):
            status, text = await operate(
                url, {**schedule, "update_maintenance_schedule": {"schedule": bad}}
            )
            assert status == 400 and message in text
        assert master.maintenance.windows == []

        await ok(
            url, {**schedule, "update_maintenance_schedule": {"schedule": {"windows": [window]}}}
        )
        got = (await ok(url, {"type": "GET_MAINTENANCE_SCHEDULE"}))["get_maintenance_schedule"]
        assert got["schedule"]["windows"] == [window]
        inverse = (await client.next_event("INVERSE_OFFERS"))["inverse_offers"]["inverse_offers"]
        assert len(inverse) == 1 and inverse[0]["agent_id"] == {"value": agent.id}
        assert inverse[0]["unavailability"] == window["unavailability"]
        status_call = {"type": "GET_MAINTENANCE_STATUS"}
        status = (await ok(url, status_call))["get_maintenance_status"]["status"]
        assert status == {
            "draining_machines": [
                {"id": {"hostname": "127.0.0.1", "ip": "127.0.0.1"}, "statuses": []}
            ],
            "down_machines": [],
        }
        await client.must(
            {
                "type": "ACCEPT_INVERSE_OFFERS",
                "accept_inverse_offers": {"inverse_offer_ids": [inverse[0]["id"]]},
            }
        )
        status = (await ok(url, status_call))["get_maintenance_status"]["status"]
        answer = status["draining_machines"][0]["statuses"]
        assert [(s["status"], s["framework_id"]) for s in answer] == [
            ("ACCEPT", {"value": client.framework_id})
        ]
        await ok(url, {**schedule, "update_maintenance_schedule": {"schedule": {"windows": []}}})
        status = (await ok(url, status_call))["get_maintenance_status"]["status"]
        assert status["draining_machines"] == []
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_offers_of_a_scheduled_machine_carry_its_unavailability() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        unavailability = {"start": {"nanoseconds": 7}}
        window = {"machine_ids": [{"hostname": "127.0.0.1"}], "unavailability": unavailability}
        await ok(
            url,
            {
                "type": "UPDATE_MAINTENANCE_SCHEDULE",
                "update_maintenance_schedule": {"schedule": {"windows": [window]}},
            },
        )
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        o = await offer(client)
        assert o["unavailability"] == unavailability
        await client.close()
        await agent.close()


class LeaderElsewhere:
    """An election (mesoslite.leadership.Group) another master has won."""

    leader: dict[str, Any] | None = {
        "id": "other",
        "pid": "master@127.0.0.1:5999",
        "hostname": "127.0.0.1",
        "port": 5999,
        "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": 5999},
    }
    leading = False

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    def contend(self, info: dict[str, Any]) -> None:
        pass

    async def start(self) -> None:
        self.on_change()

    async def stop(self) -> None:
        pass


@pytest.mark.timeout(20)
async def test_a_standby_redirects_the_operator_api_and_answers_flags_and_metrics_itself() -> None:
    config = MasterConfig(allocation_interval=0.02)
    leadership = Leadership(lambda: MesosliteMaster(config, FirstFitAllocator()), LeaderElsewhere)
    server = TestServer(create_app(leadership), host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/api/v1", "/api/v1/operator"):
                async with http.post(
                    url + path, json={"type": "GET_STATE"}, allow_redirects=False
                ) as r:
                    assert r.status == 307
                    assert r.headers["Location"] == "//127.0.0.1:5999" + path
            for path in ("/master/tasks?limit=1", "/slaves", "/master/state-summary"):
                async with http.get(url + path, allow_redirects=False) as r:
                    assert (r.status, r.headers["Location"]) == (307, "//127.0.0.1:5999" + path)
        status, body = await get(url, "/metrics/snapshot")
        assert status == 200 and body["master/elected"] == 0.0
        assert "master/slaves_active" not in body
        status, body = await get(url, "/master/flags")
        assert status == 200 and body["flags"]["allocation_interval"] == "0.02"
    finally:
        await server.close()


@pytest.mark.timeout(20)
async def test_start_maintenance_takes_the_machine_down_and_stop_brings_it_back() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await running_task(url, agent)
        machine = {"hostname": "127.0.0.1", "ip": "127.0.0.1"}
        machines = {"machines": [machine]}
        start = {"type": "START_MAINTENANCE", "start_maintenance": machines}
        stop = {"type": "STOP_MAINTENANCE", "stop_maintenance": machines}
        shown = '{"hostname":"127.0.0.1","ip":"127.0.0.1"}'
        assert await operate(url, start) == (
            400,
            f"Machine '{shown}' is not part of a maintenance schedule",
        )
        window = {"machine_ids": [machine], "unavailability": {"start": {"nanoseconds": 0}}}
        schedule = {
            "type": "UPDATE_MAINTENANCE_SCHEDULE",
            "update_maintenance_schedule": {"schedule": {"windows": [window]}},
        }
        await ok(url, schedule)
        assert await operate(url, stop) == (
            400,
            f"Machine '{shown}' is not in DOWN mode and cannot be brought up",
        )
        await ok(url, start)
        await agent.next_event("SHUTDOWN_FRAMEWORK")
        lost = (await client.next_event("UPDATE"))["update"]["status"]
        assert lost["state"] == "TASK_LOST" and agent.id not in master.agents
        status = (await ok(url, {"type": "GET_MAINTENANCE_STATUS"}))["get_maintenance_status"]
        assert status["status"] == {"draining_machines": [], "down_machines": [machine]}
        again = FakeAgent(url)
        with pytest.raises(AssertionError, match="down for maintenance"):
            await again.register(agent_id=agent.id)
        empty = {
            "type": "UPDATE_MAINTENANCE_SCHEDULE",
            "update_maintenance_schedule": {"schedule": {"windows": []}},
        }
        assert await operate(url, empty) == (
            400,
            f"Machine '{shown}' is deactivated and cannot be removed from the schedule",
        )
        await ok(url, stop)
        assert master.maintenance.windows == [] and master.maintenance.down == set()
        await again.register(agent_id=agent.id)
        assert agent.id in master.agents
        await client.close()
        await agent.close()
        await again.close()
