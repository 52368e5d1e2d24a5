"""mesoslite masters elect a leader in a real ZooKeeper, the Mesos way (mesoslite.zk).

Two masters with `--zk` as processes, agents with `--master zk://...`, and a real pymesos
framework whose MasterDetector finds the leader in the same group. The leader is SIGKILLed:
its session expires after `--zk-session-timeout` (4 s), the standby leads, the agents
re-register with their running task and the framework re-subscribes and is offered again.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from adapters.mesos.resource_manager import PymesosResourceManager
from mesoslite.local import AgentSpec, LocalCluster
from mesoslite.zk import ZkUrl
from tests.contracts.resource_manager import Recorder
from tests.eventually import wait_until
from tests.integration.mesoslite_framework import (
    FAST,
    TERMINAL,
    PymesosFramework,
    RecordingScheduler,
    agents,
)

SESSION_TIMEOUT = 4.0


def zk_url(zookeeper: str) -> str:
    return f"zk://{zookeeper}/mesoslite-{uuid.uuid4().hex[:8]}"


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    """(status, Location) of a POST that does not follow redirects."""

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.build_opener(Keep).open(request, timeout=5) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


def get_status(url: str) -> tuple[int, str]:
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(Keep).open(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


def describe(cluster: LocalCluster) -> str:
    out = []
    for path in sorted(cluster.work_dir.glob("*.log")):
        out.append(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-25:]))
    return "\n".join(out)


def members(zookeeper: str, path: str) -> dict[str, dict[str, Any]]:
    """The group's children and their JSON, read with a client of the test's own."""
    client = KazooClient(hosts=zookeeper)
    client.start(timeout=10)
    try:
        return {
            name: json.loads(client.get(f"{path}/{name}")[0]) for name in client.get_children(path)
        }
    finally:
        client.stop()
        client.close()


@pytest.fixture
def two_masters(tmp_path: Path, zookeeper: str) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path,
        agents(2),
        master_args=[*FAST, "--zk-session-timeout", str(SESSION_TIMEOUT)],
        masters=2,
        zk=zk_url(zookeeper),
    )
    with cluster:
        yield cluster


@pytest.mark.timeout(60)
def test_two_masters_elect_one_leader_that_standbys_and_zookeeper_name(
    two_masters: LocalCluster, zookeeper: str
) -> None:
    cluster = two_masters
    leader = cluster.leader()
    assert leader is not None
    standby = 1 - leader
    leading, waiting = cluster.master_state(leader), cluster.master_state(standby)
    assert leading is not None and waiting is not None
    assert leading["leader"] == leading["pid"] == f"master@127.0.0.1:{cluster.ports[leader]}"
    assert waiting["leader"] == leading["pid"] and waiting["pid"] != leading["pid"]
    assert waiting["leader_info"] == leading["leader_info"]
    assert leading["leader_info"]["address"] == {
        "hostname": "127.0.0.1",
        "ip": "127.0.0.1",
        "port": cluster.ports[leader],
    }
    assert "elected_time" in leading and "elected_time" not in waiting
    # The agents (given zk://) registered with the leader only.
    assert leading["activated_slaves"] == 2 and waiting["slaves"] == []

    # The group holds one json.info_ member per master, the lowest sequence the leader's.
    group = members(zookeeper, ZkUrl.parse(cluster.address).path)
    assert len(group) == 2 and all(name.startswith("json.info_") for name in group)
    assert group[min(group)] == leading["leader_info"]
    assert {info["id"] for info in group.values()} == {leading["id"], waiting["id"]}

    standby_url, leader_port = cluster.master_url(standby), cluster.ports[leader]
    subscribe = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {}}}).encode()
    assert post(standby_url + "/api/v1/scheduler", subscribe) == (
        307,
        f"//127.0.0.1:{leader_port}/api/v1/scheduler",
    )
    assert post(standby_url + "/master/api/v1/scheduler", subscribe) == (
        307,
        f"//127.0.0.1:{leader_port}/master/api/v1/scheduler",
    )
    assert post(standby_url + "/mesoslite/api/v1/agent", b"{}") == (
        307,
        f"//127.0.0.1:{leader_port}/mesoslite/api/v1/agent",
    )
    assert post(
        standby_url + "/master/teardown", b"frameworkId=x", "application/x-www-form-urlencoded"
    ) == (307, f"//127.0.0.1:{leader_port}/master/teardown")
    assert get_status(standby_url + "/master/redirect") == (307, f"//127.0.0.1:{leader_port}")
    assert get_status(cluster.master_url(leader) + "/master/redirect") == (
        307,
        f"//127.0.0.1:{leader_port}",
    )


@pytest.mark.timeout(60)
def test_an_agent_sent_to_the_standby_follows_its_redirect_to_the_leader(
    tmp_path: Path, zookeeper: str
) -> None:
    with LocalCluster(tmp_path, [], master_args=FAST, masters=2, zk=zk_url(zookeeper)) as cluster:
        wait_until(lambda: cluster.leader() is not None, "a leader", 10)
        leader = cluster.leader()
        assert leader is not None
        standby_url = cluster.master_url(1 - leader)
        cluster.add_agent(AgentSpec(args=("--master", standby_url)))
        state = cluster.wait_for_state(lambda s: s["activated_slaves"] == 1, 15, "the agent")
        assert state["pid"] == f"master@127.0.0.1:{cluster.ports[leader]}"
        assert "agent_redirected" in cluster.log_path("agent-0").read_text()


@pytest.mark.timeout(60)
def test_a_leader_stopped_with_sigterm_hands_over_at_once(tmp_path: Path, zookeeper: str) -> None:
    """It closes its session on the way out: its member goes at once, not at expiry."""
    args = [*FAST, "--zk-session-timeout", str(SESSION_TIMEOUT)]
    with LocalCluster(tmp_path, [], master_args=args, masters=2, zk=zk_url(zookeeper)) as cluster:
        wait_until(lambda: cluster.leader() is not None, "a leader", 10)
        leader = cluster.leader()
        assert leader is not None
        stopped = time.monotonic()
        cluster.stop_master(signal.SIGTERM, leader)
        wait_until(lambda: cluster.leader() == 1 - leader, "the standby to lead", 10)
        assert time.monotonic() - stopped < SESSION_TIMEOUT / 2


@pytest.mark.timeout(120)
def test_the_standby_takes_over_a_killed_leader_with_the_agents_tasks_and_the_framework(
    two_masters: LocalCluster,
) -> None:
    cluster = two_masters
    scheduler = RecordingScheduler(cpus=1)
    scheduler.submit({"keep": "sleep 120"})
    with PymesosFramework(cluster.address, scheduler, failover_timeout=60.0) as sched:
        sched.wait(lambda: sched.last("keep") == "TASK_RUNNING", 20, "the task RUNNING")
        leader = cluster.leader()
        assert leader is not None
        standby = 1 - leader
        before = cluster.state()
        assert [f["id"] for f in before["frameworks"]] == [sched.framework_id]
        offers_before = len(sched.offers)
        agent_of_task = sched.agent_of["keep"]

        killed = time.monotonic()
        cluster.stop_master(signal.SIGKILL, leader)
        wait_until(
            lambda: cluster.leader() == standby,
            "the standby to lead",
            SESSION_TIMEOUT + 2,
            describe=lambda: describe(cluster),
        )
        elected = time.monotonic() - killed

        # The agents re-register with the new leader, the task running as before.
        def task_back(state: dict[str, Any]) -> bool:
            tasks = [t for f in state["frameworks"] for t in f["tasks"]]
            return state["activated_slaves"] == 2 and [
                (t["id"], t["state"], t["slave_id"]) for t in tasks
            ] == [("keep", "TASK_RUNNING", agent_of_task)]

        after = cluster.wait_for_state(task_back, 15, "agents back with the task")
        assert after["id"] != before["id"] and after["pid"] != before["pid"]
        assert {s["id"] for s in after["slaves"]} == {s["id"] for s in before["slaves"]}

        # The framework (pymesos' zk:// detection) re-subscribes and is offered again.
        sched.wait(lambda: len(sched.offers) > offers_before, 30, "an offer from the new leader")
        first_offer = time.monotonic() - killed
        sched.wait(lambda: "reregistered" in sched.registrations, 5, "re-registration")
        assert [f["id"] for f in cluster.state()["frameworks"]] == [sched.framework_id]

        seen = len(sched.statuses)
        sched.driver.reconcileTasks(
            [{"task_id": {"value": "keep"}, "agent_id": {"value": agent_of_task}}]
        )
        sched.wait(
            lambda: any(
                s["task_id"]["value"] == "keep"
                and s["state"] == "TASK_RUNNING"
                and s.get("reason") == "REASON_RECONCILIATION"
                for s in sched.statuses[seen:]
            ),
            10,
            "TASK_RUNNING on reconciliation",
        )
        assert not set(sched.states["keep"]) & TERMINAL
        print(
            f"\nleader SIGKILLed -> standby leads: {elected:.2f} s; "
            f"-> first offer at the framework: {first_offer:.2f} s "
            f"(--zk-session-timeout {SESSION_TIMEOUT:g})"
        )


@pytest.mark.timeout(90)
def test_a_master_that_loses_zookeeper_stops_leading_until_it_is_elected_again(
    tmp_path: Path, zookeeper_server: Any
) -> None:
    url = f"zk://{zookeeper_server.address}/mesoslite"
    args = [*FAST, "--zk-session-timeout", str(SESSION_TIMEOUT)]
    with LocalCluster(tmp_path, agents(1), master_args=args, zk=url) as cluster:
        first = cluster.state()
        assert first["leader"] == first["pid"]
        subscribe = json.dumps(
            {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "t", "name": "t"}}}
        ).encode()

        zookeeper_server.stop()
        # Suspended, it knows no leader: 503 to frameworks and agents, no leader in its state.
        wait_until(
            lambda: post(cluster.url + "/api/v1/scheduler", subscribe)[0] == 503,
            "503 while ZooKeeper is away",
            SESSION_TIMEOUT + 2,
            describe=lambda: describe(cluster),
        )
        assert post(cluster.url + "/mesoslite/api/v1/agent", b"{}")[0] == 503
        assert get_status(cluster.url + "/master/redirect")[0] == 503
        away = cluster.master_state(0)
        assert away is not None and "leader" not in away and away["slaves"] == []

        zookeeper_server.start()
        again = cluster.wait_for_state(
            lambda s: s["activated_slaves"] == 1, 20, "the master leading again, its agent back"
        )
        assert again["leader"] == again["pid"] and again["id"] != first["id"]
        group = members(zookeeper_server.address, "/mesoslite")
        assert [info["id"] for info in group.values()] == [again["id"]]


@pytest.mark.timeout(90)
def test_the_mantis_resource_manager_given_zk_follows_the_leader(
    two_masters: LocalCluster,
) -> None:
    """`mantis master --mesos zk://...` hands the URL to pymesos unchanged: it finds the
    leader, and the next one after the leader is SIGKILLed, as the same framework."""
    cluster = two_masters
    rm = PymesosResourceManager(cluster.address, framework_name="mantis-zk", user="test")
    events = Recorder(rm)
    rm.start(events)
    try:
        wait_until(
            lambda: len({o.agent_id for o in events.offers_since(0)}) == 2,
            "offers of both agents",
            15,
        )
        leader = cluster.leader()
        assert leader is not None
        batches = len(events.offer_batches)
        cluster.stop_master(signal.SIGKILL, leader)
        wait_until(
            lambda: len(events.offers_since(batches)) > 0,
            "offers from the new leader",
            SESSION_TIMEOUT + 20,
            describe=lambda: describe(cluster),
        )
        assert cluster.leader() == 1 - leader
        assert [f["id"] for f in cluster.state()["frameworks"]] == events.framework_ids[:1]
    finally:
        rm.stop()
