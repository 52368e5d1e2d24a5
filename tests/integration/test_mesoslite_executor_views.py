"""The master's views of custom executors end to end: a real master and agent (LocalCluster), a
pymesos scheduler launching tasks on an executor written with pymesos' MesosExecutorDriver, and
pymesos' operator driver reading GET_EXECUTORS and GET_STATE, next to `/master/state` and
`/master/frameworks`; an operator TEARDOWN stops an executor that has no task left."""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymesos  # type: ignore[import-untyped]
import pytest

from mesoslite.local import LocalCluster
from mesoslite.resources import Resources
from tests.integration.mesoslite_framework import FAST, PymesosFramework, agents
from tests.integration.test_mesoslite_executor import ExecutorScheduler, revive

PID_EXECUTOR = """
import os, threading
from pymesos import Executor, MesosExecutorDriver, decode_data


class Pid(Executor):
    def launchTask(self, driver, task):
        def run():
            what = decode_data(task["data"]).decode()
            if what == "crash":
                os._exit(3)
            state = "TASK_FINISHED" if what == "finish" else "TASK_RUNNING"
            driver.sendStatusUpdate(
                {"task_id": task["task_id"], "state": state, "message": str(os.getpid())}
            )
        threading.Thread(target=run, daemon=True).start()

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})


MesosExecutorDriver(Pid(), use_addict=True).run()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("views"), agents(1), master_args=FAST) as c:
        yield c


@pytest.fixture
def executor_info(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "pid_executor.py"
    script.write_text(PID_EXECUTOR)
    return {
        "executor_id": {"value": "pids"},
        "name": "pids",
        "command": {
            "value": f"exec {sys.executable} pid_executor.py",
            "uris": [{"value": str(script)}],
        },
        "resources": Resources.of(cpus=0.1, mem=32).to_mesos(),
    }


@pytest.fixture
def operator(cluster: LocalCluster) -> Iterator[Any]:
    driver = pymesos.MesosOperatorMasterDriver(cluster.address, pymesos.OperatorMaster())
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()
        driver.join()


def get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def executors_of(operator: Any, fid: str) -> list[dict[str, Any]]:
    listed = operator.getExecutors()["get_executors"].get("executors", [])
    return [e for e in listed if e["executor_info"]["framework_id"]["value"] == fid]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(90)
def test_operator_views_list_a_custom_executor_until_it_exits(
    cluster: LocalCluster, executor_info: dict[str, Any], operator: Any
) -> None:
    scheduler = ExecutorScheduler(executor_info)
    scheduler.submit({"stay": "run"})
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(lambda: sched.last("stay") == "TASK_RUNNING", 30, "stay running")
        fid, agent_id = sched.framework_id or "", scheduler.launched_on["stay"]

        [listed] = executors_of(operator, fid)
        assert listed["agent_id"] == {"value": agent_id}
        info = listed["executor_info"]
        assert info["executor_id"] == {"value": "pids"} and info["framework_id"] == {"value": fid}
        assert info["command"] == executor_info["command"]
        state = operator.getState()["get_state"]
        assert listed in state["get_executors"]["executors"]
        [task] = [t for t in state["get_tasks"]["tasks"] if t["task_id"]["value"] == "stay"]
        assert task["executor_id"] == {"value": "pids"}

        framework = next(f for f in cluster.state()["frameworks"] if f["id"] == fid)
        [rendered] = framework["executors"]
        assert (rendered["executor_id"], rendered["slave_id"]) == ("pids", agent_id)
        assert rendered["framework_id"] == fid and rendered["name"] == "pids"
        assert rendered["command"]["value"] == executor_info["command"]["value"]
        assert (rendered["resources"]["cpus"], rendered["resources"]["mem"]) == (0.1, 32.0)
        assert rendered["role"] == "*"
        assert [t["executor_id"] for t in framework["tasks"]] == ["pids"]
        frameworks = get(cluster.port, f"/master/frameworks?framework_id={fid}")["frameworks"]
        assert frameworks[0]["executors"] == [rendered]

        scheduler.submit({"crash": "crash"})
        revive(sched)
        sched.wait(lambda: bool(scheduler.lost_executors), 30, "executorLost")
        cluster.wait_until(
            lambda: executors_of(operator, fid) == [], 10, "the exited executor forgotten"
        )
        framework = next(f for f in cluster.state()["frameworks"] if f["id"] == fid)
        assert framework["executors"] == []


@pytest.mark.timeout(90)
def test_an_operator_teardown_shuts_down_an_idle_executor(
    cluster: LocalCluster, executor_info: dict[str, Any], operator: Any
) -> None:
    scheduler = ExecutorScheduler(executor_info)
    scheduler.submit({"done": "finish"})
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(lambda: sched.last("done") == "TASK_FINISHED", 30, "done finished")
        fid = sched.framework_id or ""
        pid = int(scheduler.status_of("done")["message"])
        cluster.wait_until(
            lambda: (
                not any(
                    t["id"] == "done"
                    for f in cluster.state()["frameworks"]
                    if f["id"] == fid
                    for t in f["tasks"]
                )
            ),
            10,
            "done acknowledged (the executor has no task left)",
        )
        assert alive(pid) and len(executors_of(operator, fid)) == 1

        operator._send({"type": "TEARDOWN", "teardown": {"framework_id": {"value": fid}}})
        cluster.wait_until(lambda: not alive(pid), 15, "the idle executor shut down")
        assert executors_of(operator, fid) == []
        completed = cluster.state()["completed_frameworks"]
        assert next(f for f in completed if f["id"] == fid)["executors"] == []


def state_executors(cluster: LocalCluster, fid: str) -> list[dict[str, Any]]:
    state = cluster.state()
    return [e for f in state["frameworks"] if f["id"] == fid for e in f["executors"]]


@pytest.mark.timeout(90)
def test_a_restarted_master_learns_an_idle_executor_from_its_agent(
    cluster: LocalCluster, executor_info: dict[str, Any]
) -> None:
    scheduler = ExecutorScheduler(executor_info)
    scheduler.submit({"idle": "finish"})
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(lambda: sched.last("idle") == "TASK_FINISHED", 30, "idle finished")
        fid = sched.framework_id or ""
        cluster.wait_until(
            lambda: not any(f["tasks"] for f in cluster.state()["frameworks"] if f["id"] == fid),
            10,
            "idle acknowledged (the executor has no task left)",
        )
        [before] = state_executors(cluster, fid)

        cluster.restart_master()
        cluster.wait_until(
            lambda: len(state_executors(cluster, fid)) == 1, 20, "the agent's executor reported"
        )
        assert state_executors(cluster, fid) == [before]
