"""mesoslite end to end: a master and agents as real processes, a real pymesos framework.

Every process runs on 127.0.0.1 on free ports (mesoslite.local.LocalCluster). The framework is
pymesos' MesosSchedulerDriver with the recording Scheduler of mesoslite_framework.py, whose
callbacks run on pymesos' IO thread while the test thread waits on its Condition with deadlines.

Allocation uses the `drf` module unless MESOSLITE_TEST_ALLOCATOR names another one.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesoslite.client import SchedulerClient
from mesoslite.local import LocalCluster
from mesoslite.resources import Resources
from tests.integration.mesoslite_framework import (
    ALLOCATOR,
    FAST,
    TERMINAL,
    PymesosFramework,
    RecordingScheduler,
    agents,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("mesoslite"), agents(3), master_args=FAST) as c:
        yield c


def dump_logs(cluster: LocalCluster) -> str:
    out = []
    for path in sorted(cluster.work_dir.glob("*.log")):
        out.append(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-30:]))
    return "\n".join(out)


@pytest.mark.timeout(150)
def test_a_pymesos_framework_runs_100_short_tasks_to_completion(cluster: LocalCluster) -> None:
    scheduler = RecordingScheduler()
    scheduler.submit({f"short-{i:03d}": "sleep 0.2" for i in range(100)})  # before any offer
    with PymesosFramework(cluster.address, scheduler) as sched:
        sched.wait(
            lambda: sum(sched.last(f"short-{i:03d}") in TERMINAL for i in range(100)) == 100,
            90,
            "100 tasks to end",
        )  # generous: a loaded machine spawns slowly
        for i in range(100):
            assert sched.states[f"short-{i:03d}"] == [
                "TASK_STARTING",
                "TASK_RUNNING",
                "TASK_FINISHED",
            ]
        used_agents = set(sched.launched_on.values())
        assert len(used_agents) == 3, "offers of every agent were used"
        offer = sched.offers[0]
        assert {a["name"] for a in offer["attributes"]} == {"name", "zone"}
        assert offer["hostname"] == "127.0.0.1"
        state = cluster.state()
        fw = next(f for f in state["frameworks"] if f["id"] == sched.framework_id)
        assert fw["tasks"] == [] and len(fw["completed_tasks"]) == 100
        assert all(s["used_resources"]["cpus"] == 0 for s in state["slaves"])


@pytest.mark.timeout(60)
def test_a_killed_agent_has_its_tasks_lost_and_they_are_relaunched_elsewhere(
    tmp_path: Path,
) -> None:
    with LocalCluster(tmp_path, agents(3), master_args=FAST) as cluster:
        state = cluster.state()
        index_of = {s["id"]: int(s["attributes"]["name"].split("-")[1]) for s in state["slaves"]}
        scheduler = RecordingScheduler(cpus=1, per_offer=2, relaunch_lost=True)
        scheduler.submit({f"long-{i}": "sleep 60" for i in range(6)})
        with PymesosFramework(cluster.address, scheduler) as sched:
            sched.wait(
                lambda: sum(sched.last(f"long-{i}") == "TASK_RUNNING" for i in range(6)) == 6,
                20,
                "6 tasks RUNNING",
            )
            victim = sched.agent_of["long-0"]
            on_victim = sorted(t for t, a in sched.agent_of.items() if a == victim)
            assert on_victim
            cluster.kill_agent(index_of[victim], signal.SIGKILL)
            sched.wait(
                lambda: all(sched.last(t) == "TASK_LOST" for t in on_victim),
                10,
                f"TASK_LOST for {on_victim}",
            )
            lost = [s for s in sched.statuses if s["state"] == "TASK_LOST"]
            assert {s["task_id"]["value"] for s in lost} == set(on_victim)
            assert {s["reason"] for s in lost} == {"REASON_AGENT_REMOVED"}
            survivors = [f"long-{i}" for i in range(6) if f"long-{i}" not in on_victim]
            assert all(sched.last(t) == "TASK_RUNNING" for t in survivors)
            sched.wait(lambda: victim in sched.lost_agents, 5, "slaveLost")
            again = [t + "-again" for t in on_victim]
            sched.wait(
                lambda: all(sched.last(t) == "TASK_RUNNING" for t in again),
                15,
                "the lost tasks relaunched",
            )
            assert victim not in {sched.agent_of[t] for t in again}
            state = cluster.state()
            assert victim not in {s["id"] for s in state["slaves"]}


@pytest.mark.timeout(60)
def test_a_restarted_master_gets_agents_and_tasks_back_and_the_framework_reconciles(
    tmp_path: Path,
) -> None:
    with LocalCluster(tmp_path, agents(3), master_args=FAST) as cluster:
        scheduler = RecordingScheduler(cpus=1, per_offer=2)
        scheduler.submit({f"keep-{i}": "sleep 60" for i in range(6)})
        with PymesosFramework(cluster.address, scheduler, failover_timeout=60.0) as sched:
            sched.wait(
                lambda: sum(sched.last(f"keep-{i}") == "TASK_RUNNING" for i in range(6)) == 6,
                20,
                "6 tasks RUNNING",
            )
            before = cluster.state()
            used_before = {s["id"]: s["used_resources"] for s in before["slaves"]}

            cluster.restart_master(signal.SIGKILL)
            state = cluster.wait_for_state(
                lambda s: (
                    s["activated_slaves"] == 3
                    and sum(len(f["tasks"]) for f in s["frameworks"]) == 6
                ),
                15,
                "3 agents back with 6 tasks",
            )
            assert {s["id"] for s in state["slaves"]} == set(used_before)
            assert {s["id"]: s["used_resources"] for s in state["slaves"]} == used_before
            fw = state["frameworks"][0]
            assert fw["id"] == sched.framework_id
            assert {t["id"]: t["state"] for t in fw["tasks"]} == {
                f"keep-{i}": "TASK_RUNNING" for i in range(6)
            }

            sched.wait(lambda: "reregistered" in sched.registrations, 20, "re-registration")
            seen = len(sched.statuses)
            sched.driver.reconcileTasks([])
            sched.wait(
                lambda: (
                    len(
                        {
                            s["task_id"]["value"]
                            for s in sched.statuses[seen:]
                            if s.get("reason") == "REASON_RECONCILIATION"
                            and s["state"] == "TASK_RUNNING"
                        }
                    )
                    == 6
                ),
                10,
                "implicit reconciliation of 6 RUNNING tasks",
            )
            # The rebuilt allocation: new offers leave out what the 6 tasks hold (1 cpu each).
            offers_seen = len(sched.offers)
            sched.driver.reviveOffers()
            sched.wait(
                lambda: len({o["agent_id"]["value"] for o in sched.offers[offers_seen:]}) == 3,
                10,
                "offers from the 3 re-registered agents",
            )
            for o in sched.offers[offers_seen:]:
                held = used_before[o["agent_id"]["value"]]["cpus"]
                assert Resources.from_mesos(o["resources"]).cpus <= 4 - held
            assert all(sched.last(f"keep-{i}") == "TASK_RUNNING" for i in range(6))


@pytest.mark.timeout(60)
@pytest.mark.skipif(ALLOCATOR != "drf", reason="fair shares are the DRF allocator's promise")
def test_two_frameworks_get_fair_shares_under_drf(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, agents(3), master_args=FAST)
    try:
        cluster.start_master()
        first, second = (
            RecordingScheduler(cpus=1, per_offer=1),
            RecordingScheduler(cpus=1, per_offer=1),
        )
        first.submit({f"a-{i:02d}": "sleep 60" for i in range(20)})
        second.submit({f"b-{i:02d}": "sleep 60" for i in range(20)})
        with (
            PymesosFramework(cluster.address, first, name="first") as a,
            PymesosFramework(cluster.address, second, name="second") as b,
        ):
            for i in range(3):  # the agents come after both frameworks are there
                cluster.start_agent(i)

            def running(sched: RecordingScheduler) -> int:
                return sum(states[-1] == "TASK_RUNNING" for states in sched.states.values())

            # 3 agents x 4 cpus, 1 cpu per task: 12 tasks fill the cluster.
            a.wait(lambda: running(a) + running(b) == 12, 30, "12 tasks RUNNING in all")
            b.wait(lambda: running(a) + running(b) == 12, 5, "12 tasks RUNNING in all")
            assert abs(running(a) - running(b)) <= 1, (running(a), running(b))
    finally:
        cluster.stop()


@pytest.mark.timeout(30)
async def test_decline_with_a_filter_is_honoured(cluster: LocalCluster) -> None:
    client = SchedulerClient(cluster.url)
    await client.subscribe({"user": "test", "name": "decliner"})
    loop = asyncio.get_running_loop()
    first = (await client.next_event("OFFERS", timeout=10))["offers"]["offers"]
    target = first[0]["agent_id"]["value"]
    declined_at = loop.time()
    await client.decline(
        [o["id"]["value"] for o in first if o["agent_id"]["value"] == target], refuse_seconds=1.5
    )
    await client.decline(
        [o["id"]["value"] for o in first if o["agent_id"]["value"] != target], refuse_seconds=0
    )
    others = 0
    while True:  # the other agents keep coming back; the refused one only after 1.5 s
        offers = (await client.next_event("OFFERS", timeout=5))["offers"]["offers"]
        back = [o for o in offers if o["agent_id"]["value"] == target]
        others += len(offers) - len(back)
        await client.decline([o["id"]["value"] for o in offers], refuse_seconds=0)
        if back:
            break
    waited = loop.time() - declined_at
    assert 1.5 <= waited < 4.0, waited
    assert others >= 2, "the other agents were offered meanwhile"
    await client.must({"type": "TEARDOWN"})
    await client.close()


@pytest.mark.timeout(30)
def test_bad_calls_are_answered_with_4xx_and_a_message(cluster: LocalCluster) -> None:
    def call(method: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=5)
        try:
            conn.request(method, "/api/v1/scheduler", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    json_type = {"Content-Type": "application/json"}
    assert call("GET", b"", {})[0] == 405
    assert call("POST", b"{}", {}) == (400, "Expecting 'Content-Type' to be present")
    assert call("POST", b"{}", {"Content-Type": "text/plain"})[0] == 415
    status, text = call("POST", b"[", json_type)
    assert status == 400 and "Failed to parse body into JSON" in text
    revive = json.dumps({"type": "REVIVE", "framework_id": {"value": "nobody"}}).encode()
    assert call("POST", revive, json_type) == (400, "Framework cannot be found")
    subscribe = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u"}}})
    status, text = call("POST", subscribe.encode(), json_type)
    assert status == 400 and "name" in text
