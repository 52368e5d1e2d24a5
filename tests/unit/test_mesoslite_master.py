"""The mesoslite master in-process: v1 scheduler API semantics against a scripted fake agent.

The master runs on a real loopback aiohttp server; frameworks use mesoslite.client; the agent
is a fake that speaks the agent protocol (mesoslite.agent docstring) and whose task updates the
test writes (both in mesoslite_fakes.py). Allocation is a tiny first-fit allocator, so these tests do not
depend on the DRF module. Nothing sleeps to wait: every wait is for an event, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from mesoslite.client import SchedulerClient, command_task
from mesoslite.flags import MasterConfig
from mesoslite.http import create_app
from mesoslite.master import MesosliteMaster
from mesoslite.protocol import new_uuid, task_status
from mesoslite.resources import Resources
from tests.eventually import eventually
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, FirstFitAllocator, offer


@contextlib.asynccontextmanager
async def cluster(**config: Any) -> AsyncIterator[tuple[MesosliteMaster, str]]:
    settings: dict[str, Any] = {
        "allocation_interval": 0.02,
        "heartbeat_interval": 60.0,
        "agent_ping_timeout": 60.0,
        "agent_reregister_timeout": 0.0,
        "status_update_retry_min": 30.0,
    }
    settings.update(config)
    master = MesosliteMaster(MasterConfig(**settings), FirstFitAllocator())
    server = TestServer(create_app(master), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def subscribed(url: str, **info: Any) -> SchedulerClient:
    client = SchedulerClient(url)
    event = await client.subscribe({**FRAMEWORK, **info})
    assert event["type"] == "SUBSCRIBED"
    return client


async def launch(client: SchedulerClient, agent: FakeAgent, task_id: str, **kw: Any) -> None:
    o = await offer(client)
    await client.accept(
        [o["id"]["value"]], [command_task(task_id, o["agent_id"]["value"], "true", **kw)]
    )
    await agent.next_event("RUN_TASK")


@pytest.mark.timeout(20)
async def test_subscribe_streams_subscribed_then_offers_in_the_proto_shape() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(attributes="zone:a;rack:r1")
        client = SchedulerClient(url)
        event = await client.subscribe(FRAMEWORK)
        assert event["subscribed"]["heartbeat_interval_seconds"] == 60.0
        assert event["subscribed"]["master_info"]["port"] == master.port
        assert client.stream_id and client.framework_id
        o = await offer(client)
        assert (
            o["agent_id"]["value"] == agent.id and o["framework_id"]["value"] == client.framework_id
        )
        assert Resources.from_mesos(o["resources"]) == Resources.parse(
            "cpus:4;mem:4096;ports:[31000-31099]"
        )
        assert {a["name"]: a["text"]["value"] for a in o["attributes"]} == {
            "zone": "a",
            "rack": "r1",
        }
        assert master.state()["slaves"][0]["offered_resources"]["cpus"] == 4
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_launch_updates_are_reliable_and_acknowledgements_reach_the_agent() -> None:
    async with cluster(status_update_retry_min=0.05) as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        o = await offer(client)
        task = command_task(
            "t1",
            agent.id or "",
            "true",
            ports=[(31000, 31001)],
            labels={"labels": [{"key": "k", "value": "v"}]},
        )
        await client.accept([o["id"]["value"]], [task])
        run_task = (await agent.next_event("RUN_TASK"))["run_task"]
        assert run_task["task"]["task_id"] == {"value": "t1"}
        assert run_task["framework_info"]["id"] == {"value": client.framework_id}
        sent = await agent.update(client.framework_id or "", "t1", "TASK_RUNNING")
        first = await client.next_event("UPDATE")
        again = await client.next_event("UPDATE")  # not acknowledged: sent again
        assert (
            first["update"]["status"]["uuid"] == again["update"]["status"]["uuid"] == sent["uuid"]
        )
        state = master.state()["frameworks"][0]
        assert state["tasks"][0]["state"] == "TASK_RUNNING"
        assert state["used_resources"]["ports"] == "[31000-31001]"
        await client.acknowledge(first["update"]["status"])
        ack = await agent.next_event("ACKNOWLEDGE")
        assert ack["acknowledge"]["uuid"] == sent["uuid"]
        done = await agent.update(client.framework_id or "", "t1", "TASK_FINISHED", message="done")
        update = await client.next_event(
            "UPDATE", where=lambda e: e["update"]["status"]["uuid"] == done["uuid"]
        )
        await client.acknowledge(update["update"]["status"])
        await agent.next_event("ACKNOWLEDGE")
        fw = master.state()["frameworks"][0]
        assert fw["tasks"] == [] and [t["state"] for t in fw["completed_tasks"]] == [
            "TASK_FINISHED"
        ]
        assert master.state()["slaves"][0]["used_resources"]["cpus"] == 0
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_invalid_launches_answer_with_task_error_or_lost() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:1;mem:256")
        client = await subscribed(url)
        o = await offer(client)
        oid, aid = o["id"]["value"], o["agent_id"]["value"]
        bad = [
            command_task("big", aid, "true", cpus=2),
            command_task("dup", aid, "true"),
            command_task("dup", aid, "true"),
            {**command_task("exe", aid, "true"), "executor": {"executor_id": {"value": "e"}}},
            {**command_task("nocmd", aid, "true"), "command": {"shell": True}},
        ]
        await client.accept([oid], bad)
        errors = {}
        for _ in range(4):
            status = (await client.next_event("UPDATE"))["update"]["status"]
            errors[status["task_id"]["value"]] = (
                status["state"],
                status["reason"],
                status["message"],
            )
        assert errors["big"][0] == "TASK_ERROR" and "more resources" in errors["big"][2]
        assert errors["dup"][2] == "Task has duplicate ID: dup"
        assert "(but not both) of CommandInfo or ExecutorInfo" in errors["exe"][2]
        assert "CommandInfo.value is required" in errors["nocmd"][2]
        assert {e[1] for e in errors.values()} == {"REASON_TASK_INVALID"}
        launched = await agent.next_event("RUN_TASK")  # only the first "dup" was valid
        assert launched["run_task"]["task"]["task_id"]["value"] == "dup"
        assert agent.events("RUN_TASK") == []
        # The offer is used up now: accepting it again is an invalid-offer TASK_LOST.
        await client.accept([oid], [command_task("late", aid, "true")])
        lost = await client.next_event(
            "UPDATE", where=lambda e: e["update"]["status"]["task_id"]["value"] == "late"
        )
        assert lost["update"]["status"]["state"] == "TASK_LOST"
        assert lost["update"]["status"]["reason"] == "REASON_INVALID_OFFERS"
        assert lost["update"]["status"]["agent_id"] == {"value": aid}  # pymesos acks need it
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_bad_calls_get_mesos_status_codes_and_messages() -> None:
    async with cluster() as (master, url):
        client = await subscribed(url, failover_timeout=30.0)
        api = url + "/api/v1/scheduler"
        async with aiohttp.ClientSession() as http:

            async def post(body: Any, headers: dict[str, str]) -> tuple[int, str]:
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                async with http.post(
                    api, data=data, headers=headers, skip_auto_headers=["Content-Type"]
                ) as resp:
                    return resp.status, await resp.text()

            json_ct = {"Content-Type": "application/json"}
            async with http.get(api) as resp:
                assert resp.status == 405 and resp.headers["Allow"] == "POST"
            assert (await post({}, {}))[0] == 400
            assert (await post(b"{}", {"Content-Type": ""}))[0] in (400, 415)
            assert await post(b"x", {"Content-Type": "text/plain"}) == (
                415,
                "Expecting 'Content-Type' of application/json or application/x-protobuf",
            )
            assert (await post(b"x", {"Content-Type": "application/x-protobuf"}))[0] == 415
            code, text = await post(b"{not json", json_ct)
            assert code == 400 and text.startswith("Failed to parse body into JSON")
            code, text = await post({"type": "NOPE"}, json_ct)
            assert code == 400 and "unknown call type 'NOPE'" in text
            sub = {"type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK}}
            assert (await post(sub, {**json_ct, "Mesos-Stream-Id": "x"}))[0] == 400
            assert (await post(sub, {**json_ct, "Accept": "application/x-protobuf"}))[0] == 406
            code, text = await post(
                {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "n"}}}, json_ct
            )
            assert code == 400 and "user" in text
            code, text = await post(
                {
                    "type": "SUBSCRIBE",
                    "framework_id": {"value": "a"},
                    "subscribe": {"framework_info": FRAMEWORK},
                },
                json_ct,
            )
            assert code == 400 and "differs" in text
        revive = {"type": "REVIVE"}
        assert await client.call(revive, stream_id=None) == (
            400,
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
        )
        code, text = await client.call(revive, stream_id="wrong")
        assert code == 400 and "didn't match the stream ID" in text
        assert await client.call({**revive, "framework_id": {"value": "nope"}}) == (
            400,
            "Framework cannot be found",
        )
        assert (await client.call({"type": "ACCEPT"}))[0] == 400  # no 'accept'
        code, text = await client.call(
            {
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [],
                    "operations": [
                        {"type": "LAUNCH", "launch": {"task_infos": [{"task_id": {"value": "t"}}]}}
                    ],
                },
            }
        )
        assert code == 400 and "name" in text
        assert (await client.call({"type": "ACKNOWLEDGE", "acknowledge": {}}))[0] == 400
        assert await client.call({"type": "REQUEST", "request": {"requests": []}}) == (202, "")
        stream_id = client.stream_id
        await client.close()  # disconnected, within its failover timeout
        other = SchedulerClient(url)
        other.framework_id, other.stream_id = client.framework_id, stream_id
        other._http = aiohttp.ClientSession()
        assert await other.call(revive) == (403, "Framework is not subscribed")
        await other.close()


@pytest.mark.timeout(20)
async def test_decline_filter_holds_resources_back_until_it_expires_or_a_revive() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        o = await offer(client)
        loop = asyncio.get_running_loop()
        declined_at = loop.time()
        await client.decline([o["id"]["value"]], refuse_seconds=0.4)
        again = await offer(client)
        assert loop.time() - declined_at >= 0.4
        await client.decline([again["id"]["value"]], refuse_seconds=60)
        with pytest.raises(TimeoutError):
            await client.next_event("OFFERS", timeout=0.2)
        await client.must({"type": "REVIVE"})
        await offer(client)
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_suppress_stops_offers_and_revive_resumes_them() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        o = await offer(client)
        await client.must({"type": "SUPPRESS", "suppress": {"roles": []}})
        await client.decline([o["id"]["value"]], refuse_seconds=0)
        with pytest.raises(TimeoutError):
            await client.next_event("OFFERS", timeout=0.2)
        assert master.state()["frameworks"][0]["suppressed"] is True
        await client.must({"type": "REVIVE"})
        await offer(client)
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_kill_reaches_the_agent_and_unknown_tasks_are_lost() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        await launch(client, agent, "t1")
        await client.kill("t1")
        kill = (await agent.next_event("KILL_TASK"))["kill_task"]
        assert kill["task_id"] == {"value": "t1"} and kill["framework_id"] == {
            "value": client.framework_id
        }
        await client.kill("ghost")
        status = (await client.next_event("UPDATE"))["update"]["status"]
        assert (status["task_id"]["value"], status["state"]) == ("ghost", "TASK_LOST")
        assert "uuid" not in status
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_reconcile_explicit_and_implicit() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, capabilities=[{"type": "PARTITION_AWARE"}])
        await launch(client, agent, "t1")
        await agent.update(client.framework_id or "", "t1", "TASK_RUNNING")
        await client.next_event("UPDATE")
        await client.reconcile(["t1", "nope"])
        got = {}
        for _ in range(2):
            status = (await client.next_event("UPDATE"))["update"]["status"]
            got[status["task_id"]["value"]] = status
        assert got["t1"]["state"] == "TASK_RUNNING" and got["t1"]["agent_id"]["value"] == agent.id
        assert got["nope"]["state"] == "TASK_UNKNOWN"  # partition-aware; others get TASK_LOST
        assert {s["reason"] for s in got.values()} == {"REASON_RECONCILIATION"}
        assert all("uuid" not in s for s in got.values())
        await client.reconcile()
        status = (await client.next_event("UPDATE"))["update"]["status"]
        assert (status["task_id"]["value"], status["state"]) == ("t1", "TASK_RUNNING")
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_failover_keeps_tasks_and_resends_unacknowledged_updates() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, failover_timeout=30.0)
        fid = client.framework_id or ""
        await launch(client, agent, "t1")
        sent = await agent.update(fid, "t1", "TASK_RUNNING")
        await client.next_event("UPDATE")  # received, never acknowledged
        await client.close()
        await eventually(
            lambda: not master.state()["frameworks"][0]["connected"],
            "the framework to be disconnected",
            timeout=3,
        )
        state = master.state()
        assert state["frameworks"][0]["tasks"][0]["state"] == "TASK_RUNNING"
        back = SchedulerClient(url)
        event = await back.subscribe({**FRAMEWORK, "failover_timeout": 30.0}, framework_id=fid)
        assert event["subscribed"]["framework_id"]["value"] == fid
        update = await back.next_event("UPDATE")
        assert update["update"]["status"]["uuid"] == sent["uuid"]
        assert back.stream_id != client.stream_id
        await back.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_past_the_failover_timeout_the_framework_and_its_tasks_are_killed() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, failover_timeout=0.1)
        fid = client.framework_id or ""
        await launch(client, agent, "t1")
        await client.close()
        shutdown = await agent.next_event("SHUTDOWN_FRAMEWORK")
        assert shutdown["shutdown_framework"]["framework_id"]["value"] == fid
        state = master.state()
        assert state["frameworks"] == [] and state["completed_frameworks"][0]["id"] == fid
        assert state["slaves"][0]["used_resources"]["cpus"] == 0
        again = SchedulerClient(url)
        event = await again.subscribe(FRAMEWORK, framework_id=fid)
        assert event == {"type": "ERROR", "error": {"message": "Framework has been removed"}}
        await again.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_second_subscription_replaces_the_first() -> None:
    async with cluster() as (master, url):
        first = await subscribed(url, failover_timeout=30.0)
        second = SchedulerClient(url)
        await second.subscribe(FRAMEWORK, framework_id=first.framework_id)
        error = await first.next_event("ERROR")
        assert error["error"]["message"] == "Framework failed over"
        await asyncio.wait_for(first.closed.wait(), 2)
        assert (await first.call({"type": "REVIVE"}))[0] == 400  # its stream id is stale
        await first.close()
        await second.close()


@pytest.mark.timeout(20)
async def test_teardown_kills_tasks_and_removes_the_framework() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, failover_timeout=30.0)
        await launch(client, agent, "t1")
        await client.must({"type": "TEARDOWN"})
        await agent.next_event("SHUTDOWN_FRAMEWORK")
        await asyncio.wait_for(client.closed.wait(), 2)
        assert (
            master.state()["completed_frameworks"][0]["completed_tasks"][0]["state"]
            == "TASK_KILLED"
        )
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_lost_agent_has_its_offers_rescinded_then_its_tasks_lost() -> None:
    async with cluster(agent_ping_timeout=0.05, max_agent_ping_timeouts=3) as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        plain = await subscribed(url)
        aware = await subscribed(url, name="aware", capabilities=[{"type": "PARTITION_AWARE"}])
        o = await offer(plain)
        await plain.accept(
            [o["id"]["value"]], [command_task("p1", agent.id or "", "true")], refuse_seconds=60
        )  # the rest goes to `aware`
        await agent.next_event("RUN_TASK")
        await agent.update(plain.framework_id or "", "p1", "TASK_RUNNING")
        await plain.next_event("UPDATE")
        o = await offer(aware)
        await aware.accept(
            [o["id"]["value"]], [command_task("a1", agent.id or "", "true")], refuse_seconds=0
        )
        await agent.next_event("RUN_TASK")
        await agent.update(aware.framework_id or "", "a1", "TASK_RUNNING")
        await aware.next_event("UPDATE")
        held = await offer(aware)  # what is left, offered again
        await agent.disconnect()  # the agent process is gone
        rescind = await aware.next_event("RESCIND")
        assert rescind["rescind"]["offer_id"] == held["id"]
        lost = (await plain.next_event("UPDATE"))["update"]["status"]
        assert (lost["task_id"]["value"], lost["state"], lost["reason"]) == (
            "p1",
            "TASK_LOST",
            "REASON_AGENT_REMOVED",
        )
        unreachable = (await aware.next_event("UPDATE"))["update"]["status"]
        assert (unreachable["task_id"]["value"], unreachable["state"]) == ("a1", "TASK_UNREACHABLE")
        failure = await plain.next_event("FAILURE")
        assert failure["failure"]["agent_id"]["value"] == agent.id
        state = master.state()
        assert state["slaves"] == []
        assert [t["id"] for f in state["frameworks"] for t in f["unreachable_tasks"]] == ["a1"]
        await plain.close()
        await aware.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_restarted_master_rebuilds_from_agents_and_frameworks_reconcile() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, failover_timeout=60.0)
        fid, aid = client.framework_id or "", agent.id or ""
        await launch(client, agent, "t1", ports=[(31005, 31005)])
        finfo = {**FRAMEWORK, "failover_timeout": 60.0, "id": {"value": fid}}
        task = command_task("t1", aid, "true", ports=[(31005, 31005)])
        await client.close()
        await agent.close()
    unacked = task_status("t1", "TASK_RUNNING", agent_id=aid, source="SOURCE_EXECUTOR")
    async with cluster(agent_reregister_timeout=5.0) as (master, url):  # a new master, empty
        client = SchedulerClient(url)
        await client.subscribe({**FRAMEWORK, "failover_timeout": 60.0}, framework_id=fid)
        await client.reconcile(["t1"])  # its agent is not back yet: the answer waits
        agent = FakeAgent(url)
        await agent.register(
            agent_id=aid,
            tasks=[
                {
                    "framework_info": finfo,
                    "task": task,
                    "state": "TASK_RUNNING",
                    "updates": [unacked],
                }
            ],
        )
        assert agent.id == aid
        state = master.state()
        assert state["slaves"][0]["used_resources"]["ports"] == "[31005-31005]"
        assert [t["state"] for t in state["frameworks"][0]["tasks"]] == ["TASK_RUNNING"]
        update = await client.next_event("UPDATE", where=lambda e: "uuid" in e["update"]["status"])
        assert update["update"]["status"]["uuid"] == unacked["uuid"]
        await client.reconcile()
        status = await client.next_event(
            "UPDATE", where=lambda e: "uuid" not in e["update"]["status"]
        )
        assert status["update"]["status"]["state"] == "TASK_RUNNING"
        # The offer leaves out what t1 holds.
        o = await offer(client)
        assert Resources.from_mesos(o["resources"]).ports == ((31000, 31004), (31006, 31099))
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_an_agent_reregistering_without_a_task_makes_it_lost() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        await launch(client, agent, "t1")
        await agent.disconnect()
        again = FakeAgent(url)
        await again.register(agent_id=agent.id, tasks=[])
        status = (await client.next_event("UPDATE"))["update"]["status"]
        assert (status["state"], status["reason"]) == ("TASK_LOST", "REASON_AGENT_RESTARTED")
        await client.close()
        await agent.close()
        await again.close()


@pytest.mark.timeout(20)
async def test_messages_go_both_ways_and_heartbeats_flow() -> None:
    async with cluster(heartbeat_interval=0.05) as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        await client.next_event("HEARTBEAT")
        await client.must(
            {
                "type": "MESSAGE",
                "message": {
                    "agent_id": {"value": agent.id},
                    "executor_id": {"value": "t1"},
                    "data": "aGk=",
                },
            }
        )
        message = (await agent.next_event("FRAMEWORK_MESSAGE"))["framework_message"]
        assert message["data"] == "aGk=" and message["executor_id"] == {"value": "t1"}
        assert (
            await agent.post(
                {
                    "type": "EXECUTOR_MESSAGE",
                    "executor_message": {
                        "framework_id": {"value": client.framework_id},
                        "executor_id": {"value": "t1"},
                        "data": "eW8=",
                    },
                }
            )
            == 202
        )
        event = (await client.next_event("MESSAGE"))["message"]
        assert event == {
            "agent_id": {"value": agent.id},
            "executor_id": {"value": "t1"},
            "data": "eW8=",
        }
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_agent_calls_with_a_stale_session_are_refused() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        agent.session = "stale"
        assert await agent.post({"type": "PONG", "pong": {"seq": 1}}) == 409
        agent.id = "unknown"
        assert await agent.post({"type": "PONG", "pong": {"seq": 1}}) == 404
        await agent.close()


@pytest.mark.timeout(20)
async def test_state_redirect_and_version_endpoints() -> None:
    async with cluster() as (master, url), aiohttp.ClientSession() as http:
        async with http.get(url + "/master/redirect", allow_redirects=False) as resp:
            assert resp.status == 307 and resp.headers["Location"] == f"//127.0.0.1:{master.port}"
        async with http.get(url + "/version") as resp:
            assert (await resp.json())["version"].startswith("1.")
        async with http.get(url + "/master/state") as resp:
            state = await resp.json()
            assert state["flags"]["allocation_interval"] == "0.02"
            assert state["leader_info"]["port"] == master.port


def test_new_uuid_is_base64_of_16_bytes() -> None:
    import base64

    assert len(base64.b64decode(new_uuid())) == 16


@pytest.mark.timeout(20)
async def test_offer_timeout_rescinds_unused_offers() -> None:
    async with cluster(offer_timeout=0.1) as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url)
        o = await offer(client)
        rescind = await client.next_event("RESCIND")
        assert rescind["rescind"]["offer_id"] == o["id"]
        await offer(client)  # the resources come back as a new offer
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_shutdown_update_framework_and_operator_teardown() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = await subscribed(url, failover_timeout=30.0)
        await launch(client, agent, "t1")
        # SHUTDOWN of the command executor (its id is the task's) kills the task.
        await client.must(
            {
                "type": "SHUTDOWN",
                "shutdown": {"executor_id": {"value": "t1"}, "agent_id": {"value": agent.id}},
            }
        )
        assert (await agent.next_event("KILL_TASK"))["kill_task"]["task_id"] == {"value": "t1"}
        # UPDATE_FRAMEWORK answers 200 and can suppress the framework's role.
        info = {**FRAMEWORK, "id": {"value": client.framework_id}, "failover_timeout": 5.0}
        status, _ = await client.call(
            {
                "type": "UPDATE_FRAMEWORK",
                "update_framework": {"framework_info": info, "suppressed_roles": ["*"]},
            }
        )
        assert status == 200
        fw = master.state()["frameworks"][0]
        assert (fw["suppressed"], fw["failover_timeout"]) == (True, 5.0)
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/master/teardown", data={"frameworkId": "nope"}) as resp:
                assert resp.status == 400
            async with http.post(
                url + "/master/teardown", data={"frameworkId": client.framework_id}
            ) as resp:
                assert resp.status == 200
        await agent.next_event("SHUTDOWN_FRAMEWORK")
        assert master.state()["frameworks"] == []
        await client.close()
        await agent.close()
