"""The master's record of custom executors, in-process against a scripted agent: what
GET_EXECUTORS, `/master/state` and `/master/frameworks` list (Mesos' master.proto
Response.GetExecutors and json(ExecutorInfo) of src/common/http.cpp), from the accepted launch
until the agent reports the executor exited or the agent or the framework is removed."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from mesoslite.client import SchedulerClient, command_task
from mesoslite.http import AGENT_PATH
from mesoslite.recordio import Decoder
from mesoslite.resources import Resources
from mesoslite.state import executor_json
from mesoslite.streams import EventStream
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, offer
from tests.unit.test_mesoslite_operator import JSON, cluster, get, ok

EXECUTOR: dict[str, Any] = {
    "executor_id": {"value": "echo"},
    "name": "echo executor",
    "command": {
        "value": "python3 echo.py",
        "uris": [{"value": "http://127.0.0.1:1/echo.py", "executable": True}],
    },
    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
    "labels": {"labels": [{"key": "team", "value": "streams"}]},
}


def executor_task(task_id: str, agent_id: str) -> dict[str, Any]:
    task = command_task(task_id, agent_id, "unused")
    del task["command"]
    return {**task, "executor": EXECUTOR}


async def launch(client: SchedulerClient, agent: FakeAgent, task_id: str) -> None:
    """Launch `task_id` on the custom executor; the agent runs it; the update acknowledged."""
    o = await offer(client)
    await client.accept(
        [o["id"]["value"]], [executor_task(task_id, agent.id or "")], refuse_seconds=0
    )
    run = await agent.next_event("RUN_TASK")
    assert run["run_task"]["task"]["executor"]["executor_id"] == {"value": "echo"}
    await agent.update(client.framework_id or "", task_id, "TASK_RUNNING")
    update = await client.next_event("UPDATE")
    await client.acknowledge(update["update"]["status"])
    await agent.next_event("ACKNOWLEDGE")


async def executors(url: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await ok(url, {"type": "GET_EXECUTORS"}))["get_executors"][
        "executors"
    ]
    return listed


async def state_executors(url: str) -> list[dict[str, Any]]:
    status, state = await get(url, "/master/state")
    assert status == 200
    return [e for fw in state["frameworks"] for e in fw["executors"]]


async def exited(agent: FakeAgent, framework_id: str, status: int | None) -> None:
    body: dict[str, Any] = {
        "framework_id": {"value": framework_id},
        "executor_id": {"value": "echo"},
    }
    if status is not None:
        body["status"] = status
    assert await agent.post({"type": "EXECUTOR_EXITED", "executor_exited": body}) == 202


def test_executor_json_has_mesos_field_names() -> None:
    info = {
        **EXECUTOR,
        "framework_id": {"value": "f1"},
        "type": "CUSTOM",
        "resources": [
            {
                "name": "cpus",
                "type": "SCALAR",
                "scalar": {"value": 0.5},
                "allocation_info": {"role": "web"},
            }
        ],
    }
    rendered = executor_json("a1", info)
    assert rendered == {
        "executor_id": "echo",
        "name": "echo executor",
        "framework_id": "f1",
        "command": {
            "value": "python3 echo.py",
            "argv": [],
            "uris": [{"value": "http://127.0.0.1:1/echo.py", "executable": True}],
        },
        "resources": {"cpus": 0.5, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
        "role": "web",
        "labels": [{"key": "team", "value": "streams"}],
        "type": "CUSTOM",
        "slave_id": "a1",
    }
    bare = executor_json("a1", {"executor_id": {"value": "e"}, "framework_id": {"value": "f"}})
    assert "role" not in bare and "labels" not in bare and "type" not in bare
    assert bare["command"] == {"argv": [], "uris": []}


@pytest.mark.timeout(20)
async def test_an_executor_is_listed_from_launch_until_it_exits() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        fid = client.framework_id or ""
        assert await executors(url) == []
        await launch(client, agent, "t1")
        await launch(client, agent, "t2")  # into the same executor: still one

        listed = await executors(url)
        allocated = [{**EXECUTOR["resources"][0], "allocation_info": {"role": "*"}}]
        assert listed == [
            {
                "executor_info": {
                    **EXECUTOR,
                    "framework_id": {"value": fid},
                    "resources": allocated,  # as the master records it (Mesos' too)
                },
                "agent_id": {"value": agent.id},
            }
        ]
        state = (await ok(url, {"type": "GET_STATE"}))["get_state"]
        assert state["get_executors"]["executors"] == listed
        tasks = {t["task_id"]["value"]: t for t in state["get_tasks"]["tasks"]}
        assert tasks["t1"]["executor_id"] == {"value": "echo"}

        [rendered] = await state_executors(url)
        assert rendered["executor_id"] == "echo" and rendered["slave_id"] == agent.id
        assert rendered["framework_id"] == fid and rendered["role"] == "*"
        assert rendered["resources"]["cpus"] == 0.1
        status, fws = await get(url, f"/master/frameworks?framework_id={fid}")
        assert status == 200
        assert fws["frameworks"][0]["executors"] == [rendered]
        _, state_json = await get(url, "/master/state")
        assert {t["executor_id"] for t in state_json["frameworks"][0]["tasks"]} == {"echo"}

        # Its tasks end, the executor lives on (Mesos lists it until it exits).
        for tid in ("t1", "t2"):
            await agent.update(fid, tid, "TASK_FINISHED")
            update = await client.next_event("UPDATE")
            await client.acknowledge(update["update"]["status"])
        assert len(await executors(url)) == 1

        await exited(agent, fid, 0)
        failure = await client.next_event("FAILURE")
        assert failure["failure"]["executor_id"] == {"value": "echo"}
        assert await executors(url) == []
        assert await state_executors(url) == []
        assert master.frameworks[fid].executors == {}
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_teardown_shuts_down_an_idle_executor_and_forgets_it() -> None:
    async with cluster() as (_master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        fid = client.framework_id or ""
        await launch(client, agent, "t1")
        await agent.update(fid, "t1", "TASK_FINISHED")
        update = await client.next_event("UPDATE")
        await client.acknowledge(update["update"]["status"])
        await agent.next_event("ACKNOWLEDGE")
        assert len(await executors(url)) == 1  # no task left, the executor still runs

        await ok(url, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": fid}}})
        shutdown = await agent.next_event("SHUTDOWN_FRAMEWORK")
        assert shutdown["shutdown_framework"]["framework_id"] == {"value": fid}
        assert await executors(url) == []
        _, state = await get(url, "/master/state")
        assert state["completed_frameworks"][0]["executors"] == []
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_removed_agent_takes_its_executors_with_it() -> None:
    async with cluster() as (_master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        await launch(client, agent, "t1")
        assert len(await executors(url)) == 1
        assert await agent.post({"type": "UNREGISTER"}) == 202
        await client.next_event("FAILURE")
        assert await executors(url) == []
        assert await state_executors(url) == []
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_restarted_master_learns_executors_from_the_agents_tasks() -> None:
    async with cluster() as (_master, url):
        agent = FakeAgent(url)
        framework_info = {**FRAMEWORK, "id": {"value": "fw-1"}}
        reported: list[dict[str, Any]] = [
            {
                "framework_info": framework_info,
                "task": executor_task(task_id, "a-1"),
                "state": state,
                "updates": [],
            }
            for task_id, state in (("live", "TASK_RUNNING"), ("done", "TASK_FINISHED"))
        ]
        reported[1]["task"]["executor"] = {**EXECUTOR, "executor_id": {"value": "gone"}}
        await agent.register(agent_id="a-1", tasks=reported)
        listed = await executors(url)
        assert [(e["agent_id"]["value"], e["executor_info"]["executor_id"]) for e in listed] == [
            ("a-1", {"value": "echo"})
        ]
        assert listed[0]["executor_info"]["framework_id"] == {"value": "fw-1"}
        await agent.close()


@pytest.mark.timeout(20)
async def test_command_tasks_list_no_executor() -> None:
    async with cluster() as (_master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        o = await offer(client)
        await client.accept([o["id"]["value"]], [command_task("c1", agent.id or "", "true")])
        await agent.next_event("RUN_TASK")
        assert await executors(url) == []
        _, state = await get(url, "/master/state")
        assert state["frameworks"][0]["tasks"][0]["executor_id"] == ""
        task = (await ok(url, {"type": "GET_TASKS"}))["get_tasks"]["tasks"][0]
        assert "executor_id" not in task
        await client.close()
        await agent.close()


def register_call(agent_id: str, executors: Any) -> dict[str, Any]:
    """An agent's REGISTER with the executors it runs (mesoslite.agent's protocol)."""
    info = {
        "id": {"value": agent_id},
        "hostname": "127.0.0.1",
        "port": 5051,
        "resources": Resources.parse("cpus:4;mem:4096").to_mesos(),
    }
    register = {"agent_info": info, "tasks": [], "executors": executors}
    return {"type": "REGISTER", "register": register}


async def drained(stream: EventStream) -> list[bytes]:
    """What the master queued on a closed agent stream, as the HTTP handler would write it."""
    written: list[bytes] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            written.append(data)

    await stream.pump(Sink())  # type: ignore[arg-type]
    return written


@pytest.mark.timeout(20)
async def test_a_registering_agent_says_which_executors_it_runs() -> None:
    async with cluster() as (master, url):
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        fid = client.framework_id or ""
        mine = {"framework_info": {**FRAMEWORK, "id": {"value": fid}}, "executor_info": EXECUTOR}
        other = {
            "framework_info": {**FRAMEWORK, "id": {"value": "fw-2"}},
            "executor_info": EXECUTOR,
        }
        master.register_agent(register_call("a-1", [mine, other]))
        listed = {
            (e["executor_info"]["framework_id"]["value"], e["agent_id"]["value"])
            for e in await executors(url)
        }
        assert listed == {(fid, "a-1"), ("fw-2", "a-1")}  # an idle one; a framework recovered
        assert master.frameworks["fw-2"].recovered

        master.register_agent(register_call("a-1", [mine]))  # fw-2's executor exited meanwhile
        assert [e["executor_info"]["framework_id"]["value"] for e in await executors(url)] == [fid]

        await ok(url, {"type": "TEARDOWN", "teardown": {"framework_id": {"value": "fw-2"}}})
        agent, stream = master.register_agent(register_call("a-1", [mine, other]))
        stream.close()
        events = [orjson.loads(r) for r in Decoder().feed(b"".join(await drained(stream)))]
        assert {
            "type": "SHUTDOWN_FRAMEWORK",
            "shutdown_framework": {"framework_id": {"value": "fw-2"}},
        } in events
        assert [e["executor_info"]["framework_id"]["value"] for e in await executors(url)] == [fid]
        assert "fw-2" not in master.frameworks  # a removed framework is not recovered

        bad_entries: list[tuple[Any, str]] = [
            ("x", "'register.executors' must be a list"),
            (["x"], "'register.executors[0]' must carry 'framework_info' and 'executor_info'"),
            (
                [{"framework_info": {}, "executor_info": EXECUTOR}],
                "Expecting 'register.executors[0].framework_info.id' to be present",
            ),
            (
                [{**mine, "executor_info": {"name": "no id"}}],
                "Expecting 'register.executors[0].executor_info.executor_id' to be present",
            ),
        ]
        async with aiohttp.ClientSession() as http:
            for bad, message in bad_entries:
                body = orjson.dumps(register_call("a-9", bad))
                async with http.post(url + AGENT_PATH, data=body, headers=JSON) as resp:
                    assert resp.status == 400
                    assert message in await resp.text()
        assert set(master.agents) == {agent.id}  # nothing registered
        assert len(await executors(url)) == 1
        await client.close()


@pytest.mark.timeout(20)
async def test_a_scheduler_shutdown_reaches_an_idle_executor() -> None:
    async with cluster() as (_master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        fid = client.framework_id or ""
        await launch(client, agent, "t1")
        await agent.update(fid, "t1", "TASK_FINISHED")
        update = await client.next_event("UPDATE")
        await client.acknowledge(update["update"]["status"])
        await agent.next_event("ACKNOWLEDGE")

        shutdown = {"executor_id": {"value": "echo"}, "agent_id": {"value": agent.id}}
        await client.must({"type": "SHUTDOWN", "shutdown": shutdown})
        event = await agent.next_event("SHUTDOWN_EXECUTOR")
        assert event["shutdown_executor"] == {
            "framework_id": {"value": fid},
            "executor_id": {"value": "echo"},
        }
        await client.close()
        await agent.close()
