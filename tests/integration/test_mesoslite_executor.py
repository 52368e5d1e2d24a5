"""Executors end to end: a real master and agent (LocalCluster), a pymesos scheduler driver
launching tasks on a custom executor written with pymesos' MesosExecutorDriver (fetched into
its sandbox by the fetcher), task groups run by the default executor, and the agent's executor
API refusing bad calls with Mesos' status codes."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mesoslite.client import SchedulerClient, command_task
from mesoslite.local import LocalCluster
from mesoslite.resources import Resources
from tests.integration.mesoslite_framework import (
    FAST,
    PymesosFramework,
    RecordingScheduler,
    agents,
)

EXECUTOR_SCRIPT = """
import json, os, sys, threading
from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data

ENV = ["MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_AGENT_ENDPOINT", "MESOS_DIRECTORY",
       "MESOS_SANDBOX", "MESOS_CHECKPOINT", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
       "MESOS_SLAVE_ID", "GREETING"]


class Echo(Executor):
    def launchTask(self, driver, task):
        def run():
            tid = task["task_id"]
            driver.sendStatusUpdate({"task_id": tid, "state": "TASK_RUNNING"})
            what = decode_data(task["data"]).decode()
            if what == "finish":
                env = {k: os.environ.get(k) for k in ENV}
                driver.sendStatusUpdate(
                    {"task_id": tid, "state": "TASK_FINISHED", "message": json.dumps(env)}
                )
            elif what == "crash":
                os._exit(3)
        threading.Thread(target=run, daemon=True).start()

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver, message):
        driver.sendFrameworkMessage(encode_data(b"echo:" + decode_data(message)))


MesosExecutorDriver(Echo(), use_addict=True).run()
"""


class ExecutorScheduler(RecordingScheduler):
    """Launches queued (task id, data) pairs on one custom executor; records executor events."""

    def __init__(self, executor: dict[str, Any]) -> None:
        super().__init__()
        self.executor = executor
        self.messages: list[bytes] = []
        self.lost_executors: list[tuple[str, str, int]] = []
        self.groups: list[list[dict[str, Any]]] = []  # task groups for the DEFAULT executor

    def _tasks_for(self, offer: dict[str, Any]) -> list[dict[str, Any]]:
        tasks = []
        with self.cond:
            self.offers.append(offer)
            while self.queue:
                task_id, data = self.queue.popleft()
                self.launched_on[task_id] = offer["agent_id"]["value"]
                tasks.append(
                    {
                        "name": task_id,
                        "task_id": {"value": task_id},
                        "agent_id": offer["agent_id"],
                        "resources": Resources.of(cpus=0.1, mem=16).to_mesos(),
                        "executor": self.executor,
                        "data": base64.b64encode(data.encode()).decode(),
                    }
                )
        return tasks

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802
        try:
            with self.cond:
                groups, self.groups = self.groups, []
            if groups:
                offer = offers[0]
                operations = [
                    {
                        "type": "LAUNCH_GROUP",
                        "launch_group": {
                            "executor": {
                                "type": "DEFAULT",
                                "executor_id": {"value": f"group-{i}"},
                                "resources": Resources.of(cpus=0.1, mem=16).to_mesos(),
                            },
                            "task_group": {
                                "tasks": [{**t, "agent_id": offer["agent_id"]} for t in group]
                            },
                        },
                    }
                    for i, group in enumerate(groups)
                ]
                driver.acceptOffers([offer["id"]], operations, {"refuse_seconds": 0.5})
                offers = offers[1:]
            super().resourceOffers(driver, offers)
        except Exception as e:
            self._error(e)

    def frameworkMessage(  # noqa: N802
        self, driver: Any, executor_id: dict[str, str], agent_id: dict[str, str], data: str
    ) -> None:
        with self.cond:
            self.messages.append(base64.b64decode(data))
            self.cond.notify_all()

    def executorLost(  # noqa: N802
        self, driver: Any, executor_id: dict[str, str], agent_id: dict[str, str], status: int
    ) -> None:
        with self.cond:
            self.lost_executors.append((executor_id["value"], agent_id["value"], status))
            self.cond.notify_all()

    def status_of(self, task_id: str) -> dict[str, Any]:
        with self.cond:
            return [s for s in self.statuses if s["task_id"]["value"] == task_id][-1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("executors"), agents(1), master_args=FAST) as c:
        yield c


@pytest.fixture
def executor_info(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "echo_executor.py"
    script.write_text(EXECUTOR_SCRIPT)
    return {
        "executor_id": {"value": "echo"},
        "name": "echo",
        "command": {
            "value": f"exec {sys.executable} echo_executor.py",
            "uris": [{"value": str(script)}],
            "environment": {"variables": [{"name": "GREETING", "value": "hello"}]},
        },
        "resources": Resources.of(cpus=0.1, mem=32).to_mesos(),
    }


def revive(sched: RecordingScheduler) -> None:
    with sched.cond:
        driver = sched.driver
    driver.reviveOffers()


@pytest.mark.timeout(90)
def test_a_pymesos_executor_runs_tasks_talks_and_its_exit_fails_its_tasks(
    cluster: LocalCluster, executor_info: dict[str, Any]
) -> None:
    scheduler = ExecutorScheduler(executor_info)
    scheduler.submit({"stay": "run", "done": "finish"})
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(lambda: sched.last("done") == "TASK_FINISHED", 30, "done finished")
        sched.wait(lambda: sched.last("stay") == "TASK_RUNNING", 10, "stay running")
        env = json.loads(scheduler.status_of("done")["message"])
        assert env["MESOS_FRAMEWORK_ID"] == sched.framework_id
        assert env["MESOS_EXECUTOR_ID"] == "echo"
        assert env["MESOS_CHECKPOINT"] == "0"
        assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"].endswith("secs")
        assert env["GREETING"] == "hello"
        sandbox = Path(env["MESOS_SANDBOX"])
        assert sandbox == Path(env["MESOS_DIRECTORY"])
        assert sandbox.parts[-5:-2] == (sched.framework_id, "executors", "echo")
        assert (sandbox / "echo_executor.py").exists()  # fetched
        agent_id = scheduler.launched_on["stay"]
        assert scheduler.status_of("stay")["executor_id"] == {"value": "echo"}
        port = cluster.state()["slaves"][0]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as resp:
            frameworks = json.loads(resp.read())["frameworks"]
        executors = next(f for f in frameworks if f["id"] == sched.framework_id)["executors"]
        assert [(e["id"], e["directory"]) for e in executors] == [("echo", str(sandbox))]
        assert "stay" in [t["id"] for t in executors[0]["tasks"]]

        sched.driver.sendFrameworkMessage(
            {"value": "echo"}, {"value": agent_id}, base64.b64encode(b"hi").decode()
        )
        sched.wait(lambda: scheduler.messages == [b"echo:hi"], 10, "the executor's answer")

        sched.driver.killTask({"value": "stay"})
        sched.wait(lambda: sched.last("stay") == "TASK_KILLED", 10, "stay killed")

        scheduler.submit({"crash": "crash", "victim": "run"})
        revive(sched)
        sched.wait(lambda: sched.last("victim") in ("TASK_FAILED",), 30, "victim failed")
        sched.wait(lambda: bool(scheduler.lost_executors), 10, "executorLost")
        assert scheduler.lost_executors == [("echo", agent_id, 3 << 8)]
        victim = scheduler.status_of("victim")
        assert victim["reason"] == "REASON_EXECUTOR_TERMINATED"
        assert victim["source"] == "SOURCE_AGENT"
        assert victim["message"] == "Executor exited with status 3"
        assert victim["executor_id"] == {"value": "echo"}


def group_task(task_id: str, command: str) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "resources": Resources.of(cpus=0.1, mem=16).to_mesos(),
        "command": {"value": command},
    }


@pytest.mark.timeout(90)
def test_task_groups_start_and_die_together_in_the_default_executor(
    cluster: LocalCluster, executor_info: dict[str, Any]
) -> None:
    scheduler = ExecutorScheduler(executor_info)
    scheduler.groups = [
        [group_task("ok-1", "true"), group_task("ok-2", 'test -n "$MESOS_TASK_ID"')],
        [group_task("long", "exec sleep 60"), group_task("short", "sleep 0.5; exit 4")],
        [
            group_task("fine", "true"),
            {**group_task("bad", "true"), "container": {"type": "DOCKER"}},
        ],
    ]
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(
            lambda: all(sched.last(t) in ("TASK_FINISHED",) for t in ("ok-1", "ok-2")),
            30,
            "the first group finished",
        )
        sched.wait(lambda: sched.last("short") == "TASK_FAILED", 30, "short failed")
        sched.wait(lambda: sched.last("long") == "TASK_KILLED", 30, "long killed with it")
        assert scheduler.status_of("short")["message"] == "Command exited with status 4"
        assert sched.states["long"][:2] == ["TASK_STARTING", "TASK_RUNNING"]
        sched.wait(lambda: sched.last("bad") == "TASK_ERROR", 10, "the bad group refused")
        assert sched.last("fine") == "TASK_ERROR"
        assert scheduler.status_of("fine")["message"].startswith(
            "Task 'bad' is invalid: TaskInfo.container.type DOCKER"
        )
        sched.wait(
            lambda: {e for e, _, _ in scheduler.lost_executors} == {"group-0", "group-1"},
            30,
            "the default executors exited",
        )


async def test_the_executor_api_refuses_bad_calls_with_mesos_codes(cluster: LocalCluster) -> None:
    state = cluster.state()
    agent = state["slaves"][0]
    url = f"http://127.0.0.1:{agent['port']}/api/v1/executor"
    ids = {"framework_id": {"value": "nope"}, "executor_id": {"value": "nope"}}
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 405
        async with http.post(url, data=b"{}", skip_auto_headers=["Content-Type"]) as resp:
            assert (resp.status, await resp.text()) == (
                400,
                "Expecting 'Content-Type' to be present",
            )
        async with http.post(url, data=b"{", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
            assert (await resp.text()).startswith("Failed to parse body into JSON")
        async with http.post(url, json={**ids, "type": "SUBSCRIBE", "subscribe": {}}) as resp:
            assert (resp.status, await resp.text()) == (400, "Framework cannot be found")
        async with http.post(url, json={"type": "SUBSCRIBE", "subscribe": {}}) as resp:
            assert (resp.status, await resp.text()) == (
                400,
                "Expecting 'framework_id' to be present",
            )
        async with http.post(url, json={**ids, "type": "LAUNCH"}) as resp:
            assert resp.status == 400
            assert "Unknown call type 'LAUNCH'" in await resp.text()
        async with http.post(
            url, data=b"\x08\x01", headers={"Content-Type": "application/x-protobuf"}
        ) as resp:
            assert resp.status == 415


async def next_status(client: SchedulerClient, task_id: str) -> dict[str, Any]:
    event = await client.next_event(
        "UPDATE",
        timeout=15,
        where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id,
    )
    status: dict[str, Any] = event["update"]["status"]
    await client.acknowledge(status)
    return status


def executor_task(task_id: str, agent_id: str, executor: dict[str, Any]) -> dict[str, Any]:
    task = command_task(task_id, agent_id, "unused", cpus=0.1, mem=16)
    del task["command"]
    return {**task, "executor": executor, "data": base64.b64encode(b"run").decode()}


@pytest.mark.timeout(60)
async def test_executor_checks_updates_and_a_scheduler_shutdown(
    cluster: LocalCluster, executor_info: dict[str, Any]
) -> None:
    client = SchedulerClient(cluster.url)
    await client.subscribe({"user": "test", "name": "executor-checks"})
    offers = (await client.next_event("OFFERS", timeout=10))["offers"]["offers"]
    agent_id = offers[0]["agent_id"]["value"]
    other = {**executor_info, "command": {"value": "exec sleep 60"}}
    tasks = [
        executor_task("live", agent_id, executor_info),
        executor_task("clash", agent_id, other),  # same id, another ExecutorInfo
        executor_task("alien", agent_id, {**other, "framework_id": {"value": "someone"}}),
        executor_task("default", agent_id, {"type": "DEFAULT", "executor_id": {"value": "d"}}),
        executor_task("both", agent_id, executor_info) | {"command": {"value": "true"}},
    ]
    await client.accept([offers[0]["id"]["value"]], tasks)
    errors = {}
    for task_id in ("clash", "alien", "default", "both"):
        status = await next_status(client, task_id)
        errors[task_id] = (status["state"], status["message"])
    fid = client.framework_id
    assert errors == {
        "clash": (
            "TASK_ERROR",
            "Task has invalid ExecutorInfo (existing ExecutorInfo with same ExecutorID is not"
            " compatible)",
        ),
        "alien": (
            "TASK_ERROR",
            f"ExecutorInfo has an invalid FrameworkID (Actual: someone vs Expected: {fid})",
        ),
        "default": (
            "TASK_ERROR",
            "'DEFAULT' executor can only launch task groups (LAUNCH_GROUP)",
        ),
        "both": (
            "TASK_ERROR",
            "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present",
        ),
    }
    while (await next_status(client, "live"))["state"] != "TASK_RUNNING":
        pass

    agent = cluster.state()["slaves"][0]
    url = f"http://127.0.0.1:{agent['port']}/api/v1/executor"
    ids = {"framework_id": {"value": fid}, "executor_id": {"value": "echo"}}
    status = {"task_id": {"value": "live"}, "state": "TASK_RUNNING", "uuid": "AAAA"}
    refused = [
        ({**status, "state": "TASK_STAGING"}, "Received TASK_STAGING from executor echo"),
        ({**status, "source": "SOURCE_MASTER"}, "with invalid source, expecting 'SOURCE_EXECUTOR'"),
        ({k: v for k, v in status.items() if k != "uuid"}, "Expecting 'uuid' to be present"),
        ({**status, "executor_id": {"value": "x"}}, "does not match ExecutorID in TaskStatus: x"),
        ({**status, "task_id": {"value": "ghost"}}, "Task ghost is not known to executor echo"),
    ]
    async with aiohttp.ClientSession() as http:
        for bad, message in refused:
            call = {**ids, "type": "UPDATE", "update": {"status": bad}}
            async with http.post(url, json=call) as resp:
                assert resp.status == 400, await resp.text()
                assert message in await resp.text()

    await client.must(
        {
            "type": "SHUTDOWN",
            "shutdown": {"executor_id": {"value": "echo"}, "agent_id": {"value": agent_id}},
        }
    )
    failure = await client.next_event(
        "FAILURE", timeout=15, where=lambda e: "executor_id" in e["failure"]
    )
    assert failure["failure"]["executor_id"] == {"value": "echo"}
    ended = await next_status(client, "live")
    assert (ended["state"], ended["reason"]) == ("TASK_FAILED", "REASON_EXECUTOR_TERMINATED")
    await client.close()
