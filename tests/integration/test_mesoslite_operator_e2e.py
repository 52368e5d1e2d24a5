"""mesoslite's operator surface end to end: a master and agents as real processes
(mesoslite.local.LocalCluster), a real pymesos framework, and pymesos' operator driver
(`pymesos.MesosOperatorMasterDriver`, its synchronous calls and its SUBSCRIBE stream) as the
operator; an agent's `/state` and `/files` read over HTTP as Mesos' webui and CLI read them.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pymesos  # type: ignore[import-untyped]
import pytest

from mesoslite.local import LocalCluster
from tests.integration.mesoslite_framework import FAST, PymesosFramework, RecordingScheduler, agents


class RecordingOperator(pymesos.OperatorMaster):  # type: ignore[misc]
    """Records the events pymesos' operator driver hands over (on its IO thread)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []

    def _record(self, kind: str, payload: Any) -> None:
        with self.cond:
            self.events.append((kind, payload))
            self.cond.notify_all()

    def taskAdded(self, task_info: Any) -> None:  # noqa: N802
        self._record("task_added", task_info)

    def taskUpdated(self, task_info: Any) -> None:  # noqa: N802
        self._record("task_updated", task_info)

    def frameworkAdded(self, framework_info: Any) -> None:  # noqa: N802
        self._record("framework_added", framework_info)

    def frameworkUpdated(self, framework_info: Any) -> None:  # noqa: N802
        self._record("framework_updated", framework_info)

    def frameworkRemoved(self, framework_info: Any) -> None:  # noqa: N802
        self._record("framework_removed", framework_info)

    def agentAdded(self, agent_info: Any) -> None:  # noqa: N802
        self._record("agent_added", agent_info)

    def agentRemoved(self, agent_id: Any) -> None:  # noqa: N802
        self._record("agent_removed", agent_id)

    def wait_for(self, what: str, match: Callable[[str, Any], bool], timeout: float = 10) -> Any:
        with self.cond:
            found: list[Any] = []

            def seen() -> bool:
                found[:] = [p for k, p in self.events if match(k, p)]
                return bool(found)

            assert self.cond.wait_for(seen, timeout), f"no {what} in {self.events}"
            return found[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("operator"), agents(2), master_args=FAST) as c:
        yield c


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def agent_state(cluster: LocalCluster, agent_id: str) -> tuple[int, dict[str, Any]]:
    port = next(s["port"] for s in cluster.state()["slaves"] if s["id"] == agent_id)
    status, body = get(port, "/state")
    assert status == 200
    return port, json.loads(body)


@pytest.mark.timeout(90)
def test_pymesos_operator_driver_reads_state_follows_events_and_drains_an_agent(
    cluster: LocalCluster,
) -> None:
    operator = RecordingOperator()
    driver = pymesos.MesosOperatorMasterDriver(cluster.address, operator)
    driver.start()
    try:
        assert driver.getHealth() == {"type": "GET_HEALTH", "get_health": {"healthy": True}}
        assert driver.getVersion()["get_version"]["version_info"]["version"] == "1.11.0"
        agents_seen = driver.getAgents()["get_agents"]["agents"]
        assert len(agents_seen) == 2 and all(a["active"] for a in agents_seen)
        flags = {f["name"]: f["value"] for f in driver.getFlags()["get_flags"]["flags"]}
        assert flags["allocation_interval"] == "0.1"
        assert driver.getMaster()["get_master"]["master_info"]["port"] == cluster.port
        metrics = driver.getMetrics(1_000_000_000)["get_metrics"]["metrics"]
        assert {"name": "master/slaves_active", "value": 2.0} in metrics
        driver.updateWeights([{"role": "ops", "weight": 3.0}])
        assert driver.getWeights()["get_weights"]["weight_infos"] == [
            {"role": "ops", "weight": 3.0}
        ]

        scheduler = RecordingScheduler()
        scheduler.submit({"hello": "echo hello from the sandbox; exec sleep 60"})
        with PymesosFramework(cluster.address, scheduler) as sched:
            sched.wait(lambda: sched.last("hello") == "TASK_RUNNING", 20, "hello running")
            fid = sched.framework_id
            operator.wait_for(
                "FRAMEWORK_ADDED",
                lambda k, p: k == "framework_added" and p["framework_info"]["id"]["value"] == fid,
            )
            operator.wait_for(
                "TASK_ADDED", lambda k, p: k == "task_added" and p["task_id"]["value"] == "hello"
            )
            operator.wait_for(
                "TASK_UPDATED RUNNING",
                lambda k, p: k == "task_updated" and p["state"] == "TASK_RUNNING",
            )
            tasks = driver.getTasks()["get_tasks"]["tasks"]
            assert [(t["task_id"]["value"], t["state"]) for t in tasks] == [
                ("hello", "TASK_RUNNING")
            ]
            roles = driver.getRoles()["get_roles"]["roles"]
            assert {r["name"]: r["weight"] for r in roles} == {"*": 1.0, "ops": 3.0}
            state = driver.getState()["get_state"]
            assert state["get_frameworks"]["frameworks"][0]["framework_info"]["id"]["value"] == fid

            # The agent's /state names the sandbox; /files reads it, and nothing outside it.
            agent_id = sched.agent_of["hello"]
            port, astate = agent_state(cluster, agent_id)
            executor = astate["frameworks"][0]["executors"][0]
            assert executor["id"] == "hello" and executor["tasks"][0]["state"] == "TASK_RUNNING"
            sandbox = executor["directory"]
            status, body = get(port, "/files/browse?path=" + quote(sandbox))
            assert status == 200
            assert {Path(f["path"]).name for f in json.loads(body)} >= {"stdout", "stderr"}
            stdout = quote(sandbox + "/stdout")

            def output() -> str:
                status, body = get(port, f"/files/read?path={stdout}&offset=0")
                assert status == 200
                return str(json.loads(body)["data"])

            cluster.wait_until(lambda: output() == "hello from the sandbox\n", 10, "its output")
            status, body = get(port, f"/files/read?path={stdout}&offset=-1")
            assert json.loads(body) == {"data": "", "offset": len("hello from the sandbox\n")}
            status, body = get(port, f"/files/download?path={stdout}")
            assert (status, body) == (200, b"hello from the sandbox\n")
            for outside in (sandbox + "/../../../../../../../../../../etc/passwd", "/etc/passwd"):
                status, _ = get(port, "/files/read?path=" + quote(outside) + "&offset=0")
                assert status == 403
            assert get(port, "/files/read?path=" + quote(sandbox + "/nope"))[0] == 404
            assert get(port, "/files/download?path=" + quote(sandbox))[0] == 400
            assert get(port, "/files/browse")[0] == 400

            # Drain the agent through the same client: the task is killed, the agent DRAINED.
            driver._send(
                {
                    "type": "DRAIN_AGENT",
                    "drain_agent": {
                        "agent_id": {"value": agent_id},
                        "max_grace_period": {"seconds": 1},
                    },
                }
            )
            sched.wait(lambda: sched.last("hello") == "TASK_KILLED", 20, "hello killed")

            def drain_state() -> str:
                listed = driver.getAgents()["get_agents"]["agents"]
                mine = next(a for a in listed if a["agent_info"]["id"]["value"] == agent_id)
                return str(mine.get("drain_info", {}).get("state"))

            cluster.wait_until(lambda: drain_state() == "DRAINED", 15, "the agent DRAINED")
            _, astate = agent_state(cluster, agent_id)
            done = astate["frameworks"][0]["completed_executors"][0]
            assert done["completed_tasks"][0]["state"] == "TASK_KILLED"
            driver._send(
                {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent_id}}}
            )
        operator.wait_for(
            "FRAMEWORK_REMOVED",
            lambda k, p: k == "framework_removed" and p["id"]["value"] == fid,
        )
        assert all(a["active"] for a in driver.getAgents()["get_agents"]["agents"])
    finally:
        driver.stop()
        driver.join()


@pytest.mark.timeout(60)
def test_readonly_endpoints_and_bad_operator_calls_on_a_real_master(cluster: LocalCluster) -> None:
    for path in ("/slaves", "/master/slaves"):
        status, body = get(cluster.port, path)
        assert status == 200 and len(json.loads(body)["slaves"]) == 2
    for path in (
        "/tasks",
        "/master/tasks?limit=5&order=asc",
        "/master/frameworks",
        "/master/roles",
    ):
        assert get(cluster.port, path)[0] == 200
    status, body = get(cluster.port, "/metrics/snapshot")
    snapshot = json.loads(body)
    assert snapshot["master/elected"] == 1.0 and snapshot["master/slaves_connected"] == 2.0
    assert get(cluster.port, "/master/tasks?limit=many")[0] == 400

    def post(body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
        try:
            conn.request("POST", "/api/v1", body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    assert post(b'{"type": "GET_HEALTH"}', "text/plain")[0] == 415
    assert post(b"[1]")[0] == 400
    assert post(b'{"type": "SET_QUOTA"}')[0] == 501
    status, body = post(b'{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "x"}}}')
    assert (status, body) == (400, b"Unknown agent")
    assert all(s["active"] for s in json.loads(get(cluster.port, "/slaves")[1])["slaves"])
